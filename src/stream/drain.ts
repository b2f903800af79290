// Letting go of a connection's writes (docs/ARCHITECTURE.md, data flow 7 and "Engine loop"): finished before the
// walsender is let go when the connection is still held (a stream that shed), abandoned when it is not: with the slot
// free a hot standby may replay them, and an older write of this process landing after its newer one would undo it
// (a delete leaves no tombstone).
import { ABANDONED, type ChangeProcessor } from './processor.ts'

/** The error the writes of a connection are abandoned with (the processor logs it as such, not as a failure). */
export function abandoned(cause: Error): Error {
  const e = new Error(`${cause.message}; the writes in flight are abandoned and streamed again`)
  e.name = ABANDONED
  return e
}

/**
 * `processor.drain()` (its errors are the processor's to log); once `signal` aborts (a stop), the writes get
 * `timeoutMs` more, then `giveUp` gives up on them. The stop path and the drain of a stream that shed.
 */
export async function drainUnlessStopped(
  processor: ChangeProcessor | undefined,
  signal: AbortSignal | undefined,
  timeoutMs: number,
  giveUp: () => void,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const onStop = () => timer ??= setTimeout(giveUp, timeoutMs)
  if (signal?.aborted) onStop()
  else signal?.addEventListener('abort', onStop, { once: true })
  try {
    await processor?.drain()
  } catch { /* logged by the processor */ }
  clearTimeout(timer)
  signal?.removeEventListener('abort', onStop)
}
