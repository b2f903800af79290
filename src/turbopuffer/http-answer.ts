// An HTTP/1.1 answer read off a connection (RFC 9112), as much as a turbopuffer write's answer needs: a status line,
// headers, and a body framed by Content-Length, chunked encoding or the connection's close; interim 1xx answers
// skipped. The keep-alive connections of the write requests read theirs with it (keep-alive.ts).
import { Buffer } from 'node:buffer'

export interface HttpAnswer {
  status: number
  /** names lower-cased */
  headers: Record<string, string>
  text: string
}

/** A connection's answer being read. */
export class Reader {
  #buf: Buffer = Buffer.alloc(0)
  #head?: {
    status: number
    headers: Record<string, string>
    length?: number
    chunked: boolean
    close: boolean
    bodyAt: number
  }
  /** bytes of an answer received: a connection that got none may be retried */
  received = 0

  /** Adds bytes; the answer when it is complete. Throws on what is not HTTP/1.1. */
  push(chunk: Uint8Array): { answer: HttpAnswer; close: boolean } | undefined {
    this.received += chunk.length
    this.#buf = this.#buf.length
      ? Buffer.concat([this.#buf, chunk])
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    return this.#parse(false)
  }

  /** The server closed the connection: an answer read until then, if it is one. */
  end(): HttpAnswer | undefined {
    return this.#parse(true)?.answer
  }

  #parse(closed: boolean): { answer: HttpAnswer; close: boolean } | undefined {
    for (;;) {
      if (!this.#head) {
        const end = this.#buf.indexOf('\r\n\r\n')
        if (end < 0) return undefined
        const lines = this.#buf.toString('latin1', 0, end).split('\r\n')
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0])
        if (!m) throw new Error(`not an HTTP/1.1 answer: ${JSON.stringify(lines[0].slice(0, 40))}`)
        // lower-cased names; a repeated header's values joined as Headers would
        const headers: Record<string, string> = {}
        for (let i = 1; i < lines.length; i++) {
          const line = lines[i]
          const colon = line.indexOf(':')
          if (colon <= 0) continue
          const name = line.slice(0, colon).trim().toLowerCase()
          const value = line.slice(colon + 1).trim()
          headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
        }
        const status = Number(m[1])
        if (status >= 100 && status < 200) {
          // an interim answer (100 Continue): the real one follows
          this.#buf = this.#buf.subarray(end + 4)
          continue
        }
        const chunked = /\bchunked\b/i.test(headers['transfer-encoding'] ?? '')
        this.#head = {
          status,
          headers,
          chunked,
          length: status === 204 || status === 304 ? 0 : chunked ? undefined : contentLength(headers['content-length']),
          close: /\bclose\b/i.test(headers.connection ?? ''),
          bodyAt: end + 4,
        }
      }
      const h = this.#head
      let body: Buffer | undefined
      /** where the answer ends: bytes after it were sent for no request, and the connection is not kept */
      let end = this.#buf.length
      if (h.chunked) {
        const got = this.#dechunk(h.bodyAt)
        if (got) [body, end] = got
      } else if (h.length !== undefined) {
        end = h.bodyAt + h.length
        if (this.#buf.length >= end) body = this.#buf.subarray(h.bodyAt, end)
      } else if (closed) body = this.#buf.subarray(h.bodyAt)
      if (!body) return undefined
      return {
        answer: { status: h.status, headers: h.headers, text: body.toString('utf8') },
        close: h.close || (h.length === undefined && !h.chunked) || this.#buf.length > end,
      }
    }
  }

  /** The body of a chunked answer once its last chunk is in, and where the answer ends. */
  #dechunk(at: number): [Buffer, number] | undefined {
    const parts: Buffer[] = []
    for (;;) {
      const eol = this.#buf.indexOf('\r\n', at)
      if (eol < 0) return undefined
      const hex = this.#buf.toString('latin1', at, eol).split(';')[0].trim()
      // parseInt would take "-2" (and step back into the answer) or "2x"
      if (!/^[0-9a-f]+$/i.test(hex)) throw new Error('a chunked answer with a bad chunk size')
      const size = parseInt(hex, 16)
      if (size === 0) {
        // trailers, if any, then an empty line
        const last = this.#buf.indexOf('\r\n\r\n', eol)
        return last < 0 ? undefined : [Buffer.concat(parts), last + 4]
      }
      if (this.#buf.length < eol + 2 + size + 2) return undefined
      parts.push(this.#buf.subarray(eol + 2, eol + 2 + size))
      at = eol + 2 + size + 2
    }
  }
}

/**
 * A Content-Length's value, undefined without one. A list of one value repeated is that value (RFC 9112 §6.3); what
 * is no length fails the answer (else it would wait for a body that never completes, or take a part of one).
 */
function contentLength(text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const values = new Set(text.split(',').map((v) => v.trim()))
  const [value] = values
  if (values.size !== 1 || !/^\d+$/.test(value)) {
    throw new Error(`an answer with a bad content-length: ${JSON.stringify(text.slice(0, 40))}`)
  }
  return Number(value)
}
