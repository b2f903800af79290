// The HTTP endpoint of `puffgres run --metrics-port`: the status page `/`, Prometheus `/metrics` and `/healthz` (200
// only while streaming with lag under the bound, 503 otherwise; the body says why). Read-only; it listens on
// 127.0.0.1 unless --metrics-host says otherwise (README, Observability): what it serves names mappings, namespaces,
// tables and the slot, never a row value, connection string or key.
import { type HttpServer, serveHttp } from '../runtime.ts'
import type { StatusPage } from './status-page.ts'
import type { StreamMonitor } from './stream-monitor.ts'

export const DEFAULT_METRICS_HOST = '127.0.0.1'

export async function startMetricsServer(
  monitor: StreamMonitor,
  opts: { port: number; hostname?: string; page?: StatusPage },
): Promise<HttpServer> {
  return await serveHttp({
    port: opts.port,
    hostname: opts.hostname ?? DEFAULT_METRICS_HOST,
    maxRequestBodySize: 64 * 1024,
    fetch: (req) => handle(monitor, opts.page, req),
  })
}

// the page loads nothing from anywhere (inline style, no script); a browser is told so
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
}

async function handle(monitor: StreamMonitor, page: StatusPage | undefined, req: Request): Promise<Response> {
  const path = new URL(req.url).pathname
  if (req.method !== 'GET' && req.method !== 'HEAD') return new Response('method not allowed\n', { status: 405 })
  if (path === '/' && page) return new Response(await page.render(), { headers: PAGE_HEADERS })
  if (path === '/metrics') {
    return new Response(monitor.metrics(), { headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' } })
  }
  if (path === '/healthz') {
    const h = monitor.health()
    return new Response(JSON.stringify(h) + '\n', {
      status: h.ok ? 200 : 503,
      headers: { 'content-type': 'application/json' },
    })
  }
  return new Response(`not found: try ${page ? '/, ' : ''}/metrics or /healthz\n`, { status: 404 })
}
