/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then throws with `what` and the last value). */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T | undefined
  let error: unknown
  while (Date.now() < deadline) {
    try {
      last = await check()
      error = undefined
      if (last) return last
    } catch (e) {
      error = e
    }
    await new Promise((r) => setTimeout(r, everyMs))
  }
  throw new Error(`timed out waiting for ${what}${error ? `: ${(error as Error).message}` : ''}`)
}
