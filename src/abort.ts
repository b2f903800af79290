// A long-lived AbortSignal (run's shutdown signal) meeting work done many times over (one request, one wait): every
// listener added to the long-lived signal must be removed when that piece of work settles, or the signal keeps each
// listener, and what it closes over, for as long as the process runs (issue 21: the turbopuffer SDK adds an 'abort'
// listener to the signal it is given, closing over the request's own AbortController, and never removes it).
// withLinkedSignal leaves one listener on the long-lived signal, whatever the number of pieces of work, and keeps
// nothing of a piece once it settles (the waits of retry loops add one and take it off again: src/retry.ts, `sleep`).

/** per long-lived signal, the controllers of the work linked to it now (one listener on the signal fans out) */
const linked = new WeakMap<AbortSignal, Set<AbortController>>()

/**
 * Runs `work` with a signal of its own that aborts when `parent` does (with its reason); once `work` settles the
 * link is removed, so `parent` keeps nothing of it. Hand the signal, never `parent`, to code that may leave
 * listeners on it (an SDK call, fetch). Without a parent, `work` gets no signal.
 *
 * `parent` gets one listener for its whole life, which aborts the work linked at that moment: adding and removing a
 * listener per piece of work costs time in proportion to the listeners already there (the runtime checks for
 * duplicates), and with a namespace per tenant thousands of requests are in flight at once (issue 24).
 */
export async function withLinkedSignal<T>(
  parent: AbortSignal | undefined,
  work: (signal: AbortSignal | undefined) => Promise<T>,
): Promise<T> {
  if (!parent) return await work(undefined)
  const own = new AbortController()
  if (parent.aborted) {
    own.abort(parent.reason)
    return await work(own.signal)
  }
  let children = linked.get(parent)
  if (!children) {
    // not AbortSignal.any: some runtimes keep a composite signal's sources linked after it is collectable
    const set = new Set<AbortController>()
    linked.set(parent, children = set)
    parent.addEventListener('abort', () => {
      for (const c of set) c.abort(parent.reason)
      set.clear()
    }, { once: true })
  }
  children.add(own)
  try {
    return await work(own.signal)
  } finally {
    children.delete(own)
  }
}

/**
 * `fetch` with a timeout of its own: the timer is cleared and nothing is left linked once `fetch` (and `read`, the
 * reading of the body, which the timeout covers too) settles. AbortSignal.timeout would keep each request's signal
 * and timer until the timeout passes, even for a request answered in a millisecond.
 */
export async function fetchWithin<T>(
  url: string,
  init: RequestInit,
  timeoutMs: number,
  read: (res: Response) => Promise<T>,
): Promise<T> {
  const ctl = new AbortController()
  const timer = setTimeout(() => ctl.abort(timeoutError(timeoutMs)), timeoutMs)
  try {
    return await read(await fetch(url, { ...init, signal: ctl.signal }))
  } finally {
    clearTimeout(timer)
  }
}

function timeoutError(ms: number): Error {
  const err = new Error(`no answer within ${ms} ms`)
  err.name = 'TimeoutError'
  return err
}
