// HTTP/1.1 requests over connections kept open between requests, on Bun's own sockets (Bun.connect), for the write
// requests (write-request.ts). Bun's fetch keeps at most 64 idle connections per process (oven-sh/bun#42608, no
// setting changes it): with a namespace per tenant a batch is a request to each of hundreds of namespaces at once,
// and every request past the 64th opened a new connection — over TLS, a handshake per request. Here a connection
// that answered goes back to the pool, as many as were needed at once, and is closed after IDLE_MS unused.
// Measured (scripts/bench/connections.ts, 1,000 writes at once): over TLS 0.36 of fetch's client CPU and 0.42 of its
// time; over plain HTTP 0.6 of the CPU on both sides. Deno's fetch keeps every idle connection: it is used there.
//
// What a turbopuffer write needs of HTTP/1.1 (RFC 9112), no more: one request at a time per connection (no
// pipelining), a body of known length, an answer with Content-Length, chunked, or read until the server closes.
// A connection taken from the pool may have been closed by the server just as it was sent on: the request is then
// sent again on a new connection if not one byte of an answer came (a write is conditional on versions: sending it
// twice is harmless, docs/ARCHITECTURE.md invariant 2).
import { Buffer } from 'node:buffer'
import { isIP } from 'node:net'
import { type HttpAnswer, Reader } from './http-answer.ts'

export type { HttpAnswer } from './http-answer.ts'

/** an unused connection is closed after this long (undici's default; load balancers close idle ones later) */
export const IDLE_MS = 4000

interface Waiting {
  resolve(a: HttpAnswer): void
  reject(e: Error): void
}

/**
 * A header line as fetch's Headers would send it: the value trimmed of whitespace (an API key read with its newline
 * would otherwise end the head there), and no line break inside one (a header or a request of its own).
 */
function headerLine(name: string, value: string): string {
  const v = value.replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, '')
  // as fetch: a ByteString (a byte per character), no line break or NUL
  if (!/^[\w!#$%&'*+.^`|~-]+$/.test(name) || /[\r\n\0]|[^\0-\xff]/.test(v)) {
    throw new TypeError(`an invalid value of the header ${JSON.stringify(name)}`)
  }
  return `${name}: ${v}\r\n`
}

/** One connection and the request it carries, if any. */
class Connection {
  socket: any
  waiting?: Waiting
  reader = new Reader()
  /** bytes still to send once the socket drains */
  #unsent: Uint8Array[] = []
  /** when it last went back to the pool (performance.now()) */
  idleSince = 0
  closed = false

  constructor(readonly pool: KeepAlivePool) {}

  /** part of the request is not sent yet */
  get sending(): boolean {
    return this.#unsent.length > 0
  }

  send(data: Uint8Array): void {
    this.#unsent.push(data)
    this.drain()
  }

  /** Writes what the socket takes now; the rest when it says it drained. */
  drain(): void {
    while (this.#unsent.length) {
      const data = this.#unsent[0]
      const n = this.socket.write(data)
      if (n < data.length) {
        this.#unsent[0] = data.subarray(Math.max(0, n))
        return
      }
      this.#unsent.shift()
    }
  }

  /** The connection is done for: its request, if any, fails with `error`. */
  fail(error: Error): void {
    if (this.closed) return
    this.closed = true
    this.pool.forget(this)
    try {
      this.socket?.terminate?.()
    } catch { /* closed already */ }
    const w = this.waiting
    this.waiting = undefined
    w?.reject(error)
  }
}

/** A connection failed before any answer: the request may be sent again on a new one. */
class Unanswered extends Error {}

/**
 * Keep-alive connections to one origin (`http:` or `https:`). `maxIdle`: the most connections kept unused (the
 * caller's own bound on requests at once; the sink's write slots).
 */
export class KeepAlivePool {
  readonly #host: string
  readonly #port: number
  readonly #tls: boolean
  readonly #hostHeader: string
  readonly #idle: Connection[] = []
  readonly #all = new Set<Connection>()
  readonly #tlsOptions?: Record<string, unknown>
  readonly #idleMs: number
  /** closes connections unused for idleMs (one timer for the pool: a timer per request cost more than the request) */
  #sweeper?: ReturnType<typeof setInterval>
  /**
   * how many times close() was called: a connection that was being opened when the pool was closed is closed once it
   * opens (the pool stays usable: one opened after close() returned is kept)
   */
  #closes = 0

  /** `tls`: options of Bun's TLS sockets besides the server name (a test's `ca`); `idleMs`: default IDLE_MS */
  constructor(origin: string, public maxIdle: number, opts: { tls?: Record<string, unknown>; idleMs?: number } = {}) {
    const url = new URL(origin)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`not an HTTP origin: ${url.protocol}`)
    this.#tls = url.protocol === 'https:'
    this.#host = url.hostname.replace(/^\[|\]$/g, '')
    this.#port = Number(url.port || (this.#tls ? 443 : 80))
    this.#hostHeader = url.host
    this.#tlsOptions = opts.tls
    this.#idleMs = opts.idleMs ?? IDLE_MS
  }

  /** connections open now (idle or carrying a request) */
  get size(): number {
    return this.#all.size
  }

  /**
   * Sends one request and reads its answer. Rejects with the signal's reason once it aborts (the connection is
   * closed), or with the network's error. `headers` are checked and rendered once per object (the sink sends the
   * same object with every write): an object is not to be changed after it was given.
   */
  async request(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: string | Uint8Array | readonly string[],
    signal?: AbortSignal,
  ): Promise<HttpAnswer> {
    if (!/^\/[\x21-\x7e]*$/.test(path)) throw new TypeError(`an invalid request path: ${JSON.stringify(path)}`)
    let length = 0
    if (typeof body === 'string') length = Buffer.byteLength(body)
    else if (body instanceof Uint8Array) length = body.length
    else for (const part of body) length += Buffer.byteLength(part)
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.#hostHeader}\r\ncontent-length: ${length}\r\n`
    head += this.#headerLines(headers) + '\r\n'
    // the request in one buffer, the body encoded straight into it (one copy of a body of many megabytes, not three),
    // sent in one write: in one segment where it fits, read by the server at once
    const headLength = head.length // latin1: a byte per character
    const bytes = Buffer.allocUnsafe(headLength + length)
    bytes.write(head, 0, 'latin1')
    if (typeof body === 'string') bytes.write(body, headLength, 'utf8')
    else if (body instanceof Uint8Array) bytes.set(body, headLength)
    else {
      // a body in pieces (write-plan.ts writeBodyParts): each encoded where it goes, no text of the whole made
      let at = headLength
      for (const part of body) at += bytes.write(part, at, 'utf8')
    }
    for (;;) {
      signal?.throwIfAborted()
      const reused = this.#idle.pop()
      const conn = reused ?? await this.#open(signal)
      try {
        return await this.#exchange(conn, bytes, signal)
      } catch (e) {
        // a pooled connection the server had closed: once more on a new one (a new one's failure is the network's)
        if (e instanceof Unanswered && reused) continue
        throw e instanceof Unanswered ? (e.cause as Error) : e
      }
    }
  }

  #rendered = new WeakMap<Record<string, string>, string>()

  /** The caller's header lines (headerLine), rendered once per headers object. */
  #headerLines(headers: Record<string, string>): string {
    let lines = this.#rendered.get(headers)
    if (lines === undefined) {
      lines = ''
      for (const [k, v] of Object.entries(headers)) lines += headerLine(k, v)
      this.#rendered.set(headers, lines)
    }
    return lines
  }

  /** Closes every connection (those carrying a request fail), and those being opened now once they open. */
  close(): void {
    this.#closes++
    for (const c of [...this.#all]) c.fail(new Error('connection pool closed'))
  }

  forget(conn: Connection): void {
    this.#all.delete(conn)
    const i = this.#idle.lastIndexOf(conn)
    if (i >= 0) this.#idle.splice(i, 1)
    if (!this.#all.size && this.#sweeper) {
      clearInterval(this.#sweeper)
      this.#sweeper = undefined
    }
  }

  /** Closes the connections unused for idleMs (the idle list is in the order they went back: oldest first). */
  #sweep(): void {
    const before = performance.now() - this.#idleMs
    let n = 0
    while (n < this.#idle.length && this.#idle[n].idleSince <= before) n++
    for (const conn of this.#idle.splice(0, n)) conn.fail(new Error('idle'))
  }

  #exchange(conn: Connection, request: Uint8Array, signal?: AbortSignal): Promise<HttpAnswer> {
    conn.socket.ref?.()
    conn.reader = new Reader()
    return new Promise<HttpAnswer>((resolve, reject) => {
      const onAbort = () => conn.fail(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'))
      signal?.addEventListener('abort', onAbort, { once: true })
      const done = () => signal?.removeEventListener('abort', onAbort)
      conn.waiting = {
        resolve: (a) => {
          done()
          resolve(a)
        },
        reject: (e) => {
          done()
          reject(e)
        },
      }
      // aborted in the microtasks since the connection opened, when no listener was on the signal
      if (signal?.aborted) return onAbort()
      conn.send(request)
    })
  }

  /** The answer came: the connection goes back to the pool unless either side is closing it. */
  #answered(conn: Connection, answer: HttpAnswer, close: boolean): void {
    const w = conn.waiting
    conn.waiting = undefined
    // an answer before the whole request was sent (a refusal of its size): the connection cannot carry another
    if (close || conn.sending || this.#idle.length >= this.maxIdle) {
      conn.closed = true
      this.forget(conn)
      try {
        conn.socket.end()
      } catch { /* closed already */ }
    } else {
      conn.socket.unref?.()
      conn.idleSince = performance.now()
      this.#idle.push(conn)
      if (!this.#sweeper) {
        this.#sweeper = setInterval(() => this.#sweep(), Math.max(10, this.#idleMs / 4))
        ;(this.#sweeper as { unref?: () => void }).unref?.()
      }
    }
    w?.resolve(answer)
  }

  async #open(signal?: AbortSignal): Promise<Connection> {
    const conn = new Connection(this)
    const lost = (why: string, cause?: Error) => {
      // an answer read until a clean close (not a reset: it may be cut short), else the request failed: retried if no
      // byte of an answer came
      if (!cause && conn.waiting && !conn.closed) {
        let answer: HttpAnswer | undefined
        try {
          answer = conn.reader.end()
        } catch { /* not an answer */ }
        if (answer) return this.#answered(conn, answer, true)
      }
      const error = cause ?? new Error(`the connection to ${this.#hostHeader} ${why}`)
      conn.fail(conn.reader.received ? error : new Unanswered(error.message, { cause: error }))
    }
    const closes = this.#closes
    const g = globalThis as { Bun?: { connect(o: unknown): Promise<unknown> } }
    const connecting = g.Bun!.connect({
      hostname: this.#host,
      port: this.#port,
      // no server name for an IP address (RFC 6066 allows none, and Bun sends the host's unless told ''): Bun then
      // checks the certificate against the address
      ...(this.#tls ? { tls: { serverName: isIP(this.#host) ? '' : this.#host, ...this.#tlsOptions } } : {}),
      socket: {
        data: (_s: unknown, chunk: Uint8Array) => {
          if (!conn.waiting) return conn.fail(new Error('an answer to no request')) // the server closes it: never reused
          let got
          try {
            got = conn.reader.push(chunk)
          } catch (e) {
            return conn.fail(e as Error)
          }
          if (got) this.#answered(conn, got.answer, got.close)
        },
        drain: () => conn.drain(),
        // a certificate refused: said as such (else the connection is only "closed")
        handshake: (_s: unknown, success: boolean, authorizationError: Error | null) => {
          if (success && (!authorizationError || this.#tlsOptions?.rejectUnauthorized === false)) return
          const why = authorizationError?.message ?? 'the TLS handshake failed'
          conn.fail(new Error(`TLS with ${this.#hostHeader}: ${why}`))
        },
        end: () => lost('was closed by the server'),
        close: (_s: unknown, err?: Error) => lost('was closed', err),
        error: (_s: unknown, err: Error) => lost('failed', err),
        // Bun.connect's promise rejects with the error too
        connectError: () => {
          conn.closed = true
          this.forget(conn)
        },
      },
    })
    const socket = await abortable(connecting, signal)
    conn.socket = socket
    if (closes !== this.#closes) {
      conn.fail(new Error('connection pool closed'))
      throw new Error('connection pool closed')
    }
    // closed by the server before its first use: a network failure like any other (the sink retries it)
    if (conn.closed) throw new Error(`the connection to ${this.#hostHeader} was closed before it was used`)
    ;(socket as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true)
    this.#all.add(conn)
    return conn
  }
}

/** `p`, or the signal's reason once it aborts (a connection made after that is closed). */
function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason)
      p.then((s) => (s as { terminate?: () => void }).terminate?.(), () => {})
    }
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    p.then((v) => {
      signal.removeEventListener('abort', onAbort)
      if (!signal.aborted) resolve(v)
    }, (e) => {
      signal.removeEventListener('abort', onAbort)
      reject(e)
    })
  })
}
