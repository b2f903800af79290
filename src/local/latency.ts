// Injected write latency for benchmarks and tests: N ± M ms per request, so that requests sent in one order may be
// answered (and applied) in another, as they can be by the real service (p50 ≈ 165 ms, p99 ≈ 850 ms).
import { checkLatency } from './faults.ts'

export function checkJitter(ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new Error(`invalid jitter ${String(ms)}: expected milliseconds >= 0`)
  }
  return ms
}

/**
 * One request's delay: uniform in [latency - jitter, latency + jitter], never negative (a draw below 0 waits 0, so
 * a jitter larger than the latency makes some requests fast, like the real service's fast path).
 */
export function drawDelayMs(latencyMs: number, jitterMs: number, random: () => number = Math.random): number {
  checkLatency(latencyMs)
  if (jitterMs <= 0) return latencyMs
  return Math.max(0, latencyMs - jitterMs + random() * 2 * jitterMs)
}
