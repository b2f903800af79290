// The write requests' own keep-alive connections on Bun (src/turbopuffer/keep-alive.ts), against servers that
// answer in every way HTTP/1.1 allows a write's answer to come: over real sockets, plain and TLS.
import { afterEach, describe, expect, test } from 'bun:test'
import { Buffer } from 'node:buffer'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import process from 'node:process'
import path from 'node:path'
import { APIError } from '@turbopuffer/turbopuffer'
import { KeepAlivePool } from '../src/turbopuffer/keep-alive.ts'
import { ownConnections, postWrite, writeHeaders } from '../src/turbopuffer/write-request.ts'
import { startLocalServer } from '../src/local/server.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import { up } from './harness/write-ops.ts'
import { hasOpenssl, selfSigned } from './harness/tls.ts'

const isBun = 'Bun' in globalThis
const g = globalThis as unknown as { Bun: any }
const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

/**
 * A raw HTTP/1.1 server: `answer(request, socket, n)` is called for each complete request (head and a body of its
 * Content-Length) with the connection's count of requests; counts connections.
 */
async function rawServer(answer: (req: { head: string; body: Buffer }, socket: net.Socket, n: number) => void) {
  const stats = { connections: 0, requests: 0 }
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    stats.connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    let n = 0
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buf.toString('latin1', 0, end)
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0)
        if (buf.length < end + 4 + length) return
        const body = buf.subarray(end + 4, end + 4 + length)
        buf = buf.subarray(end + 4 + length)
        stats.requests++
        answer({ head, body }, socket, ++n)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  cleanups.push(() => {
    for (const s of sockets) s.destroy()
    return new Promise((resolve) => server.close(resolve))
  })
  return { url: `http://127.0.0.1:${port}`, stats, sockets }
}

/** A raw server that answers `{}` to every request; `seen()` is the last request. */
async function recordingServer() {
  let last: { head: string; body: Buffer } | undefined
  const s = await rawServer((req, socket) => {
    last = req
    socket.write(ok('{}'))
  })
  return { s, seen: () => last! }
}

const ok = (body: string, extra = '') =>
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${
    Buffer.byteLength(body)
  }\r\n${extra}\r\n${body}`

function pool(url: string, maxIdle = 64, opts: { idleMs?: number; tls?: Record<string, unknown> } = {}) {
  const p = new KeepAlivePool(url, maxIdle, opts)
  cleanups.push(() => p.close())
  return p
}

const send = (p: KeepAlivePool, body = '{}', signal?: AbortSignal) =>
  p.request('POST', '/v2/namespaces/a', { 'content-type': 'application/json' }, Buffer.from(body), signal)

describe.skipIf(!isBun)('keep-alive connections (Bun)', () => {
  test('one connection carries request after request; as many as were needed at once are kept', async () => {
    const s = await rawServer((req, socket) => socket.write(ok(JSON.stringify({ got: req.body.toString() }))))
    const p = pool(s.url)
    for (let i = 0; i < 5; i++) expect(JSON.parse((await send(p, `"${i}"`)).text)).toEqual({ got: `"${i}"` })
    expect(s.stats.connections).toBe(1)
    await Promise.all(Array.from({ length: 20 }, (_, i) => send(p, String(i))))
    const opened = s.stats.connections
    expect(opened).toBeLessThanOrEqual(20)
    await Promise.all(Array.from({ length: 20 }, (_, i) => send(p, String(i))))
    expect(s.stats.connections).toBe(opened) // the second round reused them all
    expect(s.stats.requests).toBe(45)
  })

  test('the request as sent: method, path, host, length and the caller headers; a body of many megabytes whole', async () => {
    const { s, seen } = await recordingServer()
    const p = pool(s.url)
    const big = Buffer.alloc(24 * 1024 * 1024, 'é') // more than a socket takes at once: sent as it drains
    await p.request('POST', '/v2/namespaces/big', { authorization: 'Bearer k' }, big)
    expect(seen().head.split('\r\n')[0]).toBe('POST /v2/namespaces/big HTTP/1.1')
    expect(seen().head).toContain(`host: ${new URL(s.url).host}`)
    expect(seen().head).toContain(`content-length: ${big.length}`)
    expect(seen().head).toContain('authorization: Bearer k')
    expect(seen().body.equals(big)).toBe(true)
  })

  test('answers: chunked with trailers, split anywhere (UTF-8 too), interim 100, 204, read until close', async () => {
    const text = JSON.stringify({ name: 'żółw 🐢', n: 1 })
    const bytes = Buffer.from(text)
    const s = await rawServer((req, socket, n) => {
      const kind = req.body.toString()
      if (kind === 'chunked') {
        // one byte at a time, across the middle of a multi-byte character
        const wire = Buffer.concat([
          Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n'),
          Buffer.from(`5\r\n`),
          bytes.subarray(0, 5),
          Buffer.from(`\r\n${(bytes.length - 5).toString(16)};ext=1\r\n`),
          bytes.subarray(5),
          Buffer.from('\r\n0\r\nx-trailer: 1\r\n\r\n'),
        ])
        let i = 0
        const drip = () => {
          if (i < wire.length) socket.write(wire.subarray(i, ++i), () => setTimeout(drip, 0))
        }
        drip()
      } else if (kind === 'continue') socket.write(`HTTP/1.1 100 Continue\r\n\r\n${ok(text)}`)
      else if (kind === 'empty') socket.write('HTTP/1.1 204 No Content\r\n\r\n')
      else if (kind === 'close') socket.end(`HTTP/1.1 200 OK\r\n\r\n${text}`)
      void n
    })
    const p = pool(s.url)
    expect((await send(p, 'chunked')).text).toBe(text)
    expect((await send(p, 'continue')).text).toBe(text)
    expect(await send(p, 'empty')).toMatchObject({ status: 204, text: '' })
    expect(s.stats.connections).toBe(1)
    expect((await send(p, 'close')).text).toBe(text)
    expect(p.size).toBe(0) // an answer read until the close: that connection is gone
  })

  test('bytes after a complete answer (sent for no request): that connection is not used again', async () => {
    const s = await rawServer((_req, socket) => socket.write(ok('{"a":1}') + ok('{"stray":1}')))
    const p = pool(s.url)
    expect((await send(p)).text).toBe('{"a":1}')
    expect((await send(p)).text).toBe('{"a":1}') // not the stray answer
    expect(s.stats.connections).toBe(2)
  })

  test('a body given as text (whole or in pieces) is sent as UTF-8, its length in bytes', async () => {
    const { s, seen } = await recordingServer()
    await pool(s.url).request('POST', '/x', {}, '{"t":"żółw 🐢"}')
    expect(seen().body.toString('utf8')).toBe('{"t":"żółw 🐢"}')
    expect(seen().head).toContain(`content-length: ${Buffer.byteLength('{"t":"żółw 🐢"}')}`)
    // in pieces (write-plan.ts writeBodyParts): each where it goes, the length the sum of theirs; a lone surrogate as
    // the replacement character, counted as the three bytes it is sent as
    const parts = ['{"upsert_rows":[', '{"t":"żółw 🐢"}', ',', '{"u":"\ud800"}', '],', '"a":1}']
    await pool(s.url).request('POST', '/x', {}, parts)
    expect(seen().body).toEqual(Buffer.from(parts.join(''), 'utf8'))
    expect(seen().head).toContain(`content-length: ${Buffer.byteLength(parts.join(''))}`)
  })

  test('`connection: close` is honoured: the next request opens a new connection', async () => {
    const s = await rawServer((_req, socket) => socket.write(ok('{}', 'connection: close\r\n')))
    const p = pool(s.url)
    await send(p)
    await send(p)
    expect(s.stats.connections).toBe(2)
  })

  test('a kept connection the server closed meanwhile: the request goes on a new one, unnoticed', async () => {
    const s = await rawServer((_req, socket) => socket.write(ok('{"n":1}')))
    const p = pool(s.url)
    await send(p)
    for (const socket of s.sockets) socket.destroy() // the server drops its idle connections
    expect((await send(p)).text).toBe('{"n":1}')
    expect(s.stats.connections).toBe(2)
  })

  test('a connection lost in the middle of an answer fails the request (it is not sent twice)', async () => {
    const s = await rawServer((_req, socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial"')
      setTimeout(() => socket.destroy(), 20)
    })
    const p = pool(s.url)
    await expect(send(p)).rejects.toThrow()
    expect(s.stats.requests).toBe(1)
  })

  test('an abort fails the request at once with its reason and closes the connection', async () => {
    const s = await rawServer(() => {/* never answers */})
    const p = pool(s.url)
    const ctl = new AbortController()
    const pending = send(p, '{}', ctl.signal)
    await new Promise((r) => setTimeout(r, 50))
    ctl.abort(new Error('stop'))
    await expect(pending).rejects.toThrow('stop')
    expect(p.size).toBe(0)
    await new Promise((r) => setTimeout(r, 50))
    expect(s.sockets.size).toBe(0)
  })

  test('a refused connection rejects; unused connections close after the idle time', async () => {
    const closed = await rawServer(() => {})
    const port = new URL(closed.url).port
    await cleanups.pop()!() // nothing listens there now
    await expect(send(pool(`http://127.0.0.1:${port}`))).rejects.toThrow()

    const s = await rawServer((_req, socket) => socket.write(ok('{}')))
    const p = pool(s.url, 64, { idleMs: 100 })
    await send(p)
    expect(p.size).toBe(1)
    await new Promise((r) => setTimeout(r, 300))
    expect(p.size).toBe(0)
    expect(s.sockets.size).toBe(0)
  })

  test('close() also closes the connections still being opened: their requests fail, none stays open', async () => {
    const s = await rawServer((_req, socket) => socket.write(ok('{}')))
    const p = pool(s.url)
    const requests = Array.from({ length: 10 }, () => send(p))
    p.close() // before any connection has opened
    const results = await Promise.allSettled(requests)
    expect(results.map((r) => r.status)).toEqual(Array(10).fill('rejected'))
    expect(p.size).toBe(0)
    await new Promise((r) => setTimeout(r, 100))
    expect(s.sockets.size).toBe(0)
  })

  test('no more idle connections are kept than maxIdle', async () => {
    const s = await rawServer((_req, socket) => setTimeout(() => socket.write(ok('{}')), 20))
    const p = pool(s.url, 3)
    await Promise.all(Array.from({ length: 10 }, () => send(p)))
    expect(p.size).toBe(3)
  })

  test('a Content-Length repeated with one value is that length; one that is no length fails the request at once', async () => {
    const s = await rawServer((req, socket) => {
      const length =
        { twice: '2\r\ncontent-length: 2', negative: '-1', word: 'two', differ: '2, 3' }[req.body.toString()]
      if (length) socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${length}\r\n\r\n{}`)
      else socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n')
    })
    const p = pool(s.url)
    expect((await send(p, 'twice', AbortSignal.timeout(2000))).text).toBe('{}')
    for (const kind of ['negative', 'word', 'differ']) {
      await expect(send(p, kind, AbortSignal.timeout(2000))).rejects.toThrow('content-length')
    }
    await expect(send(p, 'chunk', AbortSignal.timeout(2000))).rejects.toThrow('chunk size')
  })

  test('an answer read until the close is whole only when the server closed cleanly, not when it reset', async () => {
    const s = await rawServer((_req, socket) => {
      socket.write('HTTP/1.1 200 OK\r\n\r\n{"trunc')
      setTimeout(() => socket.resetAndDestroy(), 20)
    })
    await expect(send(pool(s.url))).rejects.toThrow()
  })

  test('an abort just after the connection opened, before the request went on it, still fails the request', async () => {
    const s = await rawServer(() => {/* never answers */})
    const p = pool(s.url)
    const ctl = new AbortController()
    // the abort lands in the microtasks between the connection's opening (its listener removed) and the request
    const remove = ctl.signal.removeEventListener.bind(ctl.signal)
    ctl.signal.removeEventListener = ((...args: Parameters<typeof remove>) => {
      remove(...args)
      queueMicrotask(() => ctl.abort(new Error('stop')))
    }) as typeof remove
    const settled = send(p, '{}', ctl.signal).then(() => 'answered', (e) => e.message)
    const later = new Promise((r) => setTimeout(() => r('still waiting'), 1000))
    expect(await Promise.race([settled, later])).toBe('stop')
    expect(p.size).toBe(0)
  })

  test('header values sent as fetch sends them: trimmed (a key read with its newline), no line break inside', async () => {
    const { s, seen } = await recordingServer()
    const p = pool(s.url)
    await p.request('POST', '/v2/namespaces/a', { authorization: 'Bearer k\n' }, Buffer.from('{}'))
    expect(seen().head.split('\r\n')).toContain('authorization: Bearer k')
    expect(seen().head).not.toMatch(/[^\r]\n/)
    await expect(p.request('POST', '/', { authorization: 'k\r\nx-injected: 1' }, Buffer.from('{}'))).rejects.toThrow()
    await expect(p.request('POST', '/a b', {}, Buffer.from('{}'))).rejects.toThrow()
    expect(s.stats.requests).toBe(1)
  })

  test('over TLS to an IP address: no server name sent (RFC 6066), the certificate checked against the address', async () => {
    const hellos: Buffer[] = []
    const server = net.createServer((socket) => socket.once('data', (d: Buffer) => (hellos.push(d), socket.destroy())))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise((resolve) => server.close(resolve)))
    const port = (server.address() as net.AddressInfo).port
    await expect(send(pool(`https://127.0.0.1:${port}`))).rejects.toThrow()
    await expect(send(pool(`https://localhost:${port}`))).rejects.toThrow()
    expect(hellos.map(serverName)).toEqual([undefined, 'localhost'])
    if (!hasOpenssl()) return
    const dir = mkdtempSync(path.join(os.tmpdir(), 'puffgres-tls-'))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    for (const [san, trusted] of [['IP:127.0.0.1', true], ['DNS:localhost', false]] as const) {
      const { cert, key } = selfSigned(dir, san)
      const tls = g.Bun.serve({ port: 0, hostname: '127.0.0.1', tls: { cert, key }, fetch: () => Response.json({}) })
      cleanups.push(() => tls.stop(true))
      const answer = send(pool(`https://127.0.0.1:${tls.port}`, 64, { tls: { ca: cert } }))
      if (trusted) expect((await answer).status).toBe(200)
      else await expect(answer).rejects.toThrow()
    }
  })

  test.skipIf(!hasOpenssl())(
    'over TLS: the server name checked against its certificate, connections reused',
    async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'puffgres-tls-'))
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
      const { cert, key } = selfSigned(dir, 'DNS:localhost')
      const ports = new Set<number>()
      const server = g.Bun.serve({
        port: 0,
        hostname: '127.0.0.1',
        tls: { cert, key },
        fetch(req: Request, srv: any) {
          ports.add(srv.requestIP(req).port)
          return req.text().then((t) => Response.json({ got: t }))
        },
      })
      cleanups.push(() => server.stop(true))
      const p = pool(`https://localhost:${server.port}`, 64, { tls: { ca: cert } })
      for (let i = 0; i < 3; i++) expect(JSON.parse((await send(p, `x${i}`)).text)).toEqual({ got: `x${i}` })
      expect(ports.size).toBe(1)
      // a certificate the client does not trust is refused, and the error says so
      const untrusted = pool(`https://localhost:${server.port}`)
      await expect(send(untrusted)).rejects.toThrow(/^TLS with localhost:\d+: /)
    },
  )
})

describe.skipIf(!isBun || !hasOpenssl())('a private CA (Bun)', () => {
  test('NODE_EXTRA_CA_CERTS is trusted by the own connections as by fetch (read when Bun starts: a child)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'puffgres-ca-'))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const { certFile, keyFile } = selfSigned(dir, 'DNS:localhost')
    const script = `
      import { readFileSync } from 'node:fs'
      import { KeepAlivePool } from ${JSON.stringify(path.resolve('src/turbopuffer/keep-alive.ts'))}
      const tls = { cert: readFileSync(${JSON.stringify(certFile)}, 'utf8'), key: readFileSync(${
      JSON.stringify(keyFile)
    }, 'utf8') }
      const server = Bun.serve({ port: 0, hostname: '127.0.0.1', tls, fetch: () => new Response('trusted') })
      const pool = new KeepAlivePool('https://localhost:' + server.port, 4)
      const own = await pool.request('POST', '/', {}, '').then((a) => a.text, (e) => 'refused: ' + e.message)
      const viaFetch = await fetch('https://localhost:' + server.port).then((r) => r.text(), (e) => 'refused: ' + e.message)
      console.log(JSON.stringify([own, viaFetch]))
      pool.close()
      server.stop(true)`
    const run = (env: Record<string, string>) => {
      const r = g.Bun.spawnSync([process.execPath, '-e', script], { env: { ...process.env, ...env } })
      return JSON.parse(r.stdout.toString().trim().split('\n').pop())
    }
    expect(run({ NODE_EXTRA_CA_CERTS: certFile })).toEqual(['trusted', 'trusted'])
    const [own, viaFetch] = run({ NODE_EXTRA_CA_CERTS: '' })
    expect([own.startsWith('refused'), viaFetch.startsWith('refused')]).toEqual([true, true])
  })
})

describe('which writes use their own connections', () => {
  test('not behind a proxy, not when PUFFGRES_HTTP=fetch, not for a base URL with a path or credentials', () => {
    expect(ownConnections('https://gcp-us-central1.turbopuffer.com', {})).toBe(true)
    expect(ownConnections('http://127.0.0.1:8080/', {})).toBe(true)
    expect(ownConnections('https://x.turbopuffer.com', { HTTPS_PROXY: 'http://proxy:3128' })).toBe(false)
    expect(ownConnections('https://x.turbopuffer.com', { http_proxy: 'http://proxy:3128' })).toBe(false)
    expect(ownConnections('https://x.turbopuffer.com', { PUFFGRES_HTTP: 'fetch' })).toBe(false)
    expect(ownConnections('https://x.example.com/turbopuffer', {})).toBe(false)
    expect(ownConnections('https://u:p@x.example.com', {})).toBe(false)
  })
})

describe.skipIf(!isBun)('writes over them, against the local server', () => {
  test("postWrite: an error status becomes the SDK's APIError with the answer's headers (retry-after)", async () => {
    const server = await startLocalServer({ apiKey: 'k' })
    cleanups.push(() => server.stop())
    server.failNext(1, 429, 250)
    const endpoint = { baseURL: server.url, timeoutMs: 5000, headers: writeHeaders('k'), pool: pool(server.url) }
    const err = await postWrite(endpoint, 'ns1', '{"upsert_rows":[{"id":1}]}').catch((e) => e)
    expect(err).toBeInstanceOf(APIError)
    expect(err.status).toBe(429)
    expect(err.headers.get('retry-after-ms')).toBe('250')
    expect(await postWrite(endpoint, 'ns1', '{"upsert_rows":[{"id":1}]}')).toMatchObject({ rows_upserted: 1 })
  })

  test('a sink writes a thousand namespaces at once over as many connections, then over the same ones', async () => {
    const server = await startLocalServer({ apiKey: 'k' })
    cleanups.push(() => server.stop())
    const sink = new TurbopufferSink({ api_key: 'k', base_url: server.url }, { env: {} })
    const round = (v: string) =>
      Promise.all(Array.from({ length: 1000 }, (_, i) => sink.write(`ka_${i}`, [up(i, v, { n: i })])))
    const first = await round('v1')
    expect(first.every((r) => r.written === 1)).toBe(true)
    await round('v2')
    expect(server.stats().writesAcknowledged).toBe(2000)
    expect(server.documents('ka_999')[0]).toMatchObject({ id: 999, n: 999 })
  })
})

/** The server name (SNI) a TLS ClientHello carries, if any. */
function serverName(hello: Buffer): string | undefined {
  let i = 5 + 4 + 2 + 32 // record and handshake headers, version, random
  i += 1 + hello[i] // session id
  i += 2 + hello.readUInt16BE(i) // cipher suites
  i += 1 + hello[i] // compression methods
  const end = i + 2 + hello.readUInt16BE(i)
  for (i += 2; i < end; i += 4 + hello.readUInt16BE(i + 2)) {
    if (hello.readUInt16BE(i) === 0) return hello.toString('latin1', i + 9, i + 4 + hello.readUInt16BE(i + 2))
  }
  return undefined
}
