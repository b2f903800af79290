// The only module that knows whether puffgres runs on Bun or Deno. Everything else calls these functions.

import { appendFileSync } from 'node:fs'
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
 * without this (boundHeapGrowth's collections, timed rather than at a page's end, come later). A no-op on Deno.
 */
export function collectGarbage(): void {
  g.Bun?.gc(true)
}

/** collections boundHeapGrowth forced, and the time they took (the memory trace reports them) */
const forcedCollections = { count: 0, ms: 0 }

/** How boundHeapGrowth paces its collections. */
export interface HeapBound {
  /**
   * growth of heap plus external memory past what the last collection kept that forces one; default 16 MiB on Deno,
   * 32 MiB on Bun (the same peak in the 200 MB transaction with half the collections)
   */
  slackBytes?: number
  /** the shortest gap between two forced collections (also at least 3× the last one's time); default 100 ms */
  minGapMs?: number
  /** on Bun too (default true); false: Deno only */
  bun?: boolean
}

/**
 * Keeps the JavaScript heap, and the memory outside it that its garbage holds, from growing far past what is alive.
 * Deno: V8 lets the old generation grow to up to ~4× what survived its last full collection before it collects again;
 * `run` promotes every row it holds while a write is in flight (and each batch's request body), so on a big
 * transaction Deno's heap swung between ~45 and ~200 MB and the process peaked at ~370 MB. Dead objects also hold
 * external memory (the replication socket's chunks, the request bodies fetch encoded: ~35 MB between collections in
 * a 200 MB transaction), and the allocator keeps what they freed, so it counts too. Bun: its collector returns the
 * memory outside its heap late (`run`'s peak RSS 250-280 MB in the same transaction, 180-200 MB with this).
 * A full collection is forced once the heap plus external memory have grown `slackBytes` past what the last
 * collection kept (checked every 50 ms); the next no sooner than 3× the last one's time later (and `minGapMs`), so
 * that forced collections take at most ~25% of a core (Deno: ~20-80 ms each on a loaded 2-core machine, Bun ~20 ms;
 * a quiet stream allocates too little to trigger one). `run` uses the defaults; `backfill` 32 MiB and 500 ms on Deno
 * only: it allocates as fast as the CPU lets it (on Bun, 16 MiB seemed to cost it ~10% of its rows/s).
 * Deno gives no flag to set V8's growth from inside (--heap-growing-percent set at run time changes nothing), so
 * `--expose-gc` is set at run time: it applies to contexts made after it, and one is made to fetch `gc`. Returns
 * the stop function; a no-op where this fails.
 */
export function boundHeapGrowth(bound: HeapBound = {}): () => void {
  const pace = { slackBytes: bound.slackBytes ?? 16 * 1024 * 1024, minGapMs: bound.minGapMs ?? 100 }
  if (g.Bun) {
    if (bound.bun === false) return () => {}
    return forceCollections(collectGarbage, () => {
      const m = process.memoryUsage()
      return m.heapUsed + m.external
    }, { ...pace, slackBytes: bound.slackBytes ?? 32 * 1024 * 1024 })
  }
  if (!g.Deno) return () => {}
  let gc: (() => void) | undefined
  try {
    v8.setFlagsFromString('--expose-gc')
    gc = vm.runInNewContext('typeof gc === "function" ? gc : undefined')
  } catch { /* this runtime does not allow it: V8's own policy then */ }
  if (typeof gc !== 'function') return () => {}
  return forceCollections(gc, () => {
    const h = v8.getHeapStatistics() as v8.HeapInfo & { external_memory?: number }
    return h.used_heap_size + (h.external_memory ?? 0)
  }, pace)
}

/** boundHeapGrowth's policy, over a runtime's full collection and its measure of the memory held */
function forceCollections(
  gc: () => void,
  held: () => number,
  { slackBytes, minGapMs }: { slackBytes: number; minGapMs: number },
): () => void {
  let kept = held()
  /** when the next collection may be forced */
  let next = 0
  const timer = setInterval(() => {
    const now = performance.now()
    const h = held()
    kept = Math.min(kept, h) // the runtime's own collections count too
    if (h - kept < slackBytes || now < next) return
    gc()
    const done = performance.now()
    forcedCollections.count++
    forcedCollections.ms += done - now
    next = done + Math.max(minGapMs, 3 * (done - now))
    kept = held()
  }, 50)
  ;(timer as { unref?: () => void }).unref?.()
  return () => clearInterval(timer)
}

/**
 * Diagnostics: with PUFFGRES_MEMORY_TRACE=<file> set, appends a line of the process's memory (rss, heapTotal, heapUsed,
 * external, arrayBuffers in MB, from process.memoryUsage on both runtimes) to the file every 100 ms until stopped.
 */
export function traceMemory(file = process.env.PUFFGRES_MEMORY_TRACE): () => void {
  if (!file) return () => {}
  const mb = (n: number | undefined) => ((n ?? 0) / 1048576).toFixed(0)
  const t0 = performance.now()
  const timer = setInterval(() => {
    const m = process.memoryUsage()
    appendFileSync(
      file,
      `${((performance.now() - t0) / 1000).toFixed(1)}s rss=${mb(m.rss)} heapTotal=${mb(m.heapTotal)} heapUsed=${
        mb(m.heapUsed)
      } external=${mb(m.external)} arrayBuffers=${mb(m.arrayBuffers)} forcedGCs=${forcedCollections.count} forcedGCms=${
        forcedCollections.ms.toFixed(0)
      }\n`,
    )
  }, 100)
  ;(timer as { unref?: () => void }).unref?.()
  return () => clearInterval(timer)
}
