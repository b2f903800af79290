// The only module that knows whether puffgres runs on Bun or Deno. Everything else calls these functions.

import process from 'node:process'
import v8 from 'node:v8'
import vm from 'node:vm'

const g = globalThis as any

export interface ServeOptions {
  /** 0 picks a free port */
  port: number
  hostname: string
  fetch: (req: Request) => Promise<Response>
  /** largest request body the runtime itself lets through; the handler can enforce a smaller one */
  maxRequestBodySize?: number
}

export interface HttpServer {
  port: number
  /** stops listening and closes open connections */
  stop(): Promise<void>
}

/** Serves HTTP with the runtime's native server (`Bun.serve` or `Deno.serve`). */
export async function serveHttp(opts: ServeOptions): Promise<HttpServer> {
  if (g.Bun) {
    const server = g.Bun.serve({
      port: opts.port,
      hostname: opts.hostname,
      fetch: opts.fetch,
      // Bun's default (128 MiB) would answer 413 itself with a non-JSON body before our handler sees the request.
      maxRequestBodySize: opts.maxRequestBodySize ?? 1024 * 1024 * 1024,
      // Bun closes connections idle for 10 s by default, which cuts off requests delayed by injected latency.
      idleTimeout: 255,
    })
    return {
      port: server.port,
      async stop() {
        await server.stop(true)
      },
    }
  }
  if (g.Deno) {
    let port = 0
    let listened!: () => void
    const listening = new Promise<void>((resolve) => listened = resolve)
    const server = g.Deno.serve({
      port: opts.port,
      hostname: opts.hostname,
      onListen: (addr: { port: number }) => {
        port = addr.port
        listened()
      },
    }, opts.fetch)
    await listening
    return {
      port,
      async stop() {
        await server.shutdown()
      },
    }
  }
  throw new Error('serving HTTP needs Bun or Deno (Node.js is not supported)')
}

/**
 * Calls `handler` with the signal's name on every SIGINT and SIGTERM (Bun and Deno both implement `process.on`)
 * until the returned function is called.
 */
export function onShutdownSignals(handler: (sig: 'SIGINT' | 'SIGTERM') => void): () => void {
  const onInt = () => handler('SIGINT')
  const onTerm = () => handler('SIGTERM')
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)
  return () => {
    process.off('SIGINT', onInt)
    process.off('SIGTERM', onTerm)
  }
}

/** Resolves with the signal's name on the first SIGINT or SIGTERM. */
export function waitForShutdownSignal(): Promise<'SIGINT' | 'SIGTERM'> {
  return new Promise((resolve) => {
    const off = onShutdownSignals((sig) => {
      off()
      resolve(sig)
    })
  })
}

const virtualModules = new Set<string>()

/**
 * Makes `import { … } from '<name>'` in files loaded at run time (user transforms) resolve to `exports`. Under Bun
 * this registers a runtime plugin: a `bun build --compile` binary cannot otherwise import the modules bundled into
 * it by name, and plain `bun src/cli.ts` would look for the package in the user's project (or try to install it).
 * Deno has no runtime module hooks; there a transform imports types only (erased) or maps the name in its own
 * deno.json. Returns whether the module was registered; registering the same name twice is a no-op.
 */
export function registerVirtualModule(name: string, exports: Record<string, unknown>): boolean {
  if (!g.Bun || virtualModules.has(name)) return false
  virtualModules.add(name)
  g.Bun.plugin({
    name: `virtual module ${name}`,
    setup(build: any) {
      build.module(name, () => ({ exports, loader: 'object' }))
    },
  })
  return true
}

/**
 * Bun only: a full collection now. A tenant backfill (backfill/tenant-page-writer.ts) allocates a page's worth of
 * requests to many namespaces at once, faster than Bun's collector returns it: its peak RSS was ~100 MB higher
 * without this. A no-op on Deno, where boundHeapGrowth bounds the heap.
 */
export function collectGarbage(): void {
  g.Bun?.gc(true)
}

/**
 * Deno only: keeps the JavaScript heap from growing far past what is alive. V8 lets the old generation grow to up to
 * ~4× what survived its last full collection before it collects again; `run` promotes every row it holds while a
 * write is in flight, so on a big transaction Deno's heap swung between ~45 and ~200 MB and the process peaked at
 * ~370 MB (Bun: ~190). Here a full collection is forced once the heap has grown `slackBytes` past what the last one
 * kept (at most two a second, ~20-50 ms of CPU each; a quiet stream allocates too little to trigger one). Used by
 * `run` and `backfill`.
 * Deno gives no flag to set this from inside, so `--expose-gc` is set at run time: it applies to contexts made
 * after it, and one is made to fetch `gc`. Returns the stop function; a no-op on Bun (its collector keeps
 * up) or where this fails.
 */
export function boundHeapGrowth(slackBytes = 32 * 1024 * 1024, everyMs = 100): () => void {
  if (!g.Deno) return () => {}
  let gc: (() => void) | undefined
  try {
    v8.setFlagsFromString('--expose-gc')
    gc = vm.runInNewContext('typeof gc === "function" ? gc : undefined')
  } catch { /* this runtime does not allow it: V8's own policy then */ }
  if (typeof gc !== 'function') return () => {}
  const used = () => v8.getHeapStatistics().used_heap_size
  let kept = used()
  let last = 0
  const timer = setInterval(() => {
    if (used() - kept < slackBytes || performance.now() - last < 500) return
    gc!()
    last = performance.now()
    kept = used()
  }, everyMs)
  ;(timer as { unref?: () => void }).unref?.()
  return () => clearInterval(timer)
}
