// `puffgres local`: runs the turbopuffer-compatible local server in the foreground until SIGINT/SIGTERM.
import { parseArgs } from 'node:util'
import { startLocalServer } from '../local/server.ts'
import { waitForShutdownSignal } from '../runtime.ts'

const DEFAULT_PORT = 8787

export const help = `puffgres local: run a turbopuffer-compatible server on this machine (development, demos, tests)

Usage: puffgres local [options]

Options:
  --port <N>          port to listen on (default ${DEFAULT_PORT}; 0 picks a free one)
  --host <ADDR>       address to listen on (default 127.0.0.1)
  --data-dir <PATH>   keep namespaces in this folder across restarts (default: in memory only)
  --api-key <KEY>     accept only this API key (default: any non-empty key)
  --fail-rate <R>     answer this share (0..1) of writes with 500, for testing retries (default 0)
  --latency-ms <MS>   delay every request by this many milliseconds (default 0)
  --jitter-ms <MS>    spread each delay uniformly over latency ± this, never below 0 (default 0); e.g.
                      --latency-ms 150 --jitter-ms 200 answers out of order like the real service
  --max-body-mb <MB>  largest request body in MiB (default and most: 512, turbopuffer's limit)
  --namespace-mb-per-second <MB>
                      answer writes beyond this many MB a second per namespace with 429, as turbopuffer does
                      beyond its ~32 MB/s (one second of burst; default: no limit)
  -h, --help          this help

Point puffgres (or any turbopuffer client) at it with
  TURBOPUFFER_BASE_URL=http://127.0.0.1:${DEFAULT_PORT}  TURBOPUFFER_API_KEY=<any non-empty key>
Fault injection at run time: POST /_admin/fail-next {"count","status","retry_after_ms"}, POST /_admin/latency
{"ms","jitter_ms"}, POST /_admin/fail-rate {"rate"}; GET /_admin/stats.`

function num(name: string, text: string | undefined, fallback: number, check: (n: number) => boolean): number {
  if (text === undefined) return fallback
  const n = Number(text)
  if (text.trim() === '' || !Number.isFinite(n) || !check(n)) {
    throw new Error(`invalid --${name} ${JSON.stringify(text)}`)
  }
  return n
}

export async function localCommand(argv: string[]): Promise<number> {
  let opts
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'data-dir': { type: 'string' },
        'api-key': { type: 'string' },
        'fail-rate': { type: 'string' },
        'latency-ms': { type: 'string' },
        'jitter-ms': { type: 'string' },
        'max-body-mb': { type: 'string' },
        'namespace-mb-per-second': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    })
    if (values.help) {
      console.log(help)
      return 0
    }
    opts = {
      port: num('port', values.port, DEFAULT_PORT, (n) => Number.isInteger(n) && n >= 0 && n <= 65535),
      hostname: values.host ?? '127.0.0.1',
      dataDir: values['data-dir'],
      apiKey: values['api-key'],
      failRate: num('fail-rate', values['fail-rate'], 0, (n) => n >= 0 && n <= 1),
      latencyMs: num('latency-ms', values['latency-ms'], 0, (n) => n >= 0),
      jitterMs: num('jitter-ms', values['jitter-ms'], 0, (n) => n >= 0),
      maxBodyBytes: Math.round(num('max-body-mb', values['max-body-mb'], 512, (n) => n > 0 && n <= 512) * 1024 * 1024),
      namespaceBytesPerSecond: num('namespace-mb-per-second', values['namespace-mb-per-second'], 0, (n) => n > 0) *
        1e6,
    }
    if (opts.apiKey === '') throw new Error('invalid --api-key: must not be empty')
  } catch (e) {
    console.error(`error: ${(e as Error).message} (see puffgres local --help)`)
    return 2
  }
  let server
  try {
    server = await startLocalServer(opts)
  } catch (e) {
    console.error(`error: ${(e as Error).message}`)
    return 1
  }
  console.log(`turbopuffer-compatible local server listening on ${server.url}`)
  console.log(
    `data: ${opts.dataDir ? `kept in ${opts.dataDir}` : 'in memory (lost on exit; use --data-dir to keep it)'}`,
  )
  console.log(`point puffgres at it: TURBOPUFFER_BASE_URL=${server.url} TURBOPUFFER_API_KEY=${opts.apiKey ?? 'local'}`)
  const signal = await waitForShutdownSignal()
  console.log(`${signal}: stopping`)
  await server.stop()
  return 0
}
