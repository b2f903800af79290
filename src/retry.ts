// The one backoff for every retry loop: the sink's requests, the embedding provider, the engine's reconnects, a
// `bin:` transform's restarts, a transform failure that can pass (docs/ARCHITECTURE.md, invariant 12).

/** Jitter: none (the ceiling), full (uniform in [0, ceiling]) or equal (uniform in [ceiling/2, ceiling]). */
export type Jitter = 'none' | 'full' | 'equal'

export interface Backoff {
  /** the first retry's ceiling, ms */
  baseMs: number
  /** the largest ceiling, ms */
  maxMs: number
  jitter?: Jitter
}

/** The wait before retry number `attempt` (0: the first): min(max, base·2^attempt), jittered as the policy says. */
export function backoffDelay(attempt: number, b: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(Math.max(attempt, 0), 40))
  switch (b.jitter ?? 'none') {
    case 'full':
      return Math.floor(random() * ceiling)
    case 'equal':
      return ceiling / 2 + random() * ceiling / 2
    default:
      return ceiling
  }
}

/** The error a wait rejects with once its AbortSignal fires: the signal's reason when it is an Error. */
export function abortError(signal: AbortSignal | undefined, what = 'aborted'): Error {
  const reason = signal?.reason
  if (reason instanceof Error) return reason
  const err = new Error(what)
  err.name = 'AbortError'
  return err
}

/**
 * Waits `ms`. When `signal` aborts: rejects (abortError(signal, abortMessage)), or resolves at once when
 * `abortMessage` is null (a loop that checks the signal itself).
 */
export function sleep(ms: number, signal?: AbortSignal, abortMessage: string | null = 'aborted'): Promise<void> {
  return new Promise((resolve, reject) => {
    const abort = () => abortMessage === null ? resolve() : reject(abortError(signal, abortMessage))
    if (signal?.aborted) return abort()
    const onAbort = () => {
      clearTimeout(timer)
      abort()
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
