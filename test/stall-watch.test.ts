// The stall watch (src/stream/stall-watch.ts): the walsender is let go only when writes are in flight and none lands
// for stallMs; the engine's side of it, against a real PostgreSQL shutdown, is in test/stream-restart.test.ts.
import { describe, expect, test } from 'bun:test'
import { StallWatch } from '../src/stream/stall-watch.ts'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('StallWatch', () => {
  test('writes in flight and none landing: onStall once, after stallMs', async () => {
    const stalls: number[] = []
    const started = performance.now()
    const w = new StallWatch({ stallMs: 100, writing: () => true, onStall: (ms) => stalls.push(ms) })
    await sleep(400)
    w.stop()
    expect(stalls.length).toBe(1)
    expect(stalls[0]).toBeGreaterThanOrEqual(100)
    expect(performance.now() - started).toBeGreaterThanOrEqual(100)
  })

  test('writes landing, however long they keep being in flight: no stall', async () => {
    const stalls: number[] = []
    const w = new StallWatch({ stallMs: 100, writing: () => true, onStall: (ms) => stalls.push(ms) })
    for (let i = 0; i < 15; i++) {
      await sleep(20)
      w.landed()
    }
    w.stop()
    expect(stalls).toEqual([])
  })

  test('nothing in flight (an idle stream, a long transaction being read): no stall', async () => {
    const stalls: number[] = []
    let writing = false
    const w = new StallWatch({ stallMs: 100, writing: () => writing, onStall: (ms) => stalls.push(ms) })
    await sleep(300)
    expect(stalls).toEqual([])
    // the time idle does not count: a write starting now has its own stallMs
    writing = true
    await sleep(50)
    expect(stalls).toEqual([])
    await sleep(200)
    w.stop()
    expect(stalls.length).toBe(1)
  })
})
