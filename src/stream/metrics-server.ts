// The HTTP endpoint of `puffgres run --metrics-port`: Prometheus `/metrics` and `/healthz` (200 only while
// streaming with lag under the bound, 503 otherwise; the body says why).
import { type HttpServer, serveHttp } from '../runtime.ts'
import type { StreamMonitor } from './stream-monitor.ts'

export async function startMetricsServer(
  monitor: StreamMonitor,
  opts: { port: number; hostname?: string },
): Promise<HttpServer> {
  return await serveHttp({
    port: opts.port,
    hostname: opts.hostname ?? '0.0.0.0',
    maxRequestBodySize: 64 * 1024,
    fetch: (req) => Promise.resolve(handle(monitor, req)),
  })
}

function handle(monitor: StreamMonitor, req: Request): Response {
  const path = new URL(req.url).pathname
  if (req.method !== 'GET' && req.method !== 'HEAD') return new Response('method not allowed\n', { status: 405 })
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
  return new Response('not found: try /metrics or /healthz\n', { status: 404 })
}
