// The AIMD limit on writes in flight: grows by about one per round of full use, halves once per 429 storm.
import { describe, expect, test } from 'bun:test'
import { AdaptiveLimit, allSettled, forEachAdaptive, Slots } from '../src/concurrency.ts'

describe('AdaptiveLimit', () => {
  test('grows while used fully, not while idle, and stops at max', () => {
    const l = new AdaptiveLimit({ initial: 4, max: 6 })
    for (let i = 0; i < 4; i++) l.landed(l.begin(), false)
    expect(l.current).toBe(4)
    for (let i = 0; i < 4; i++) l.landed(l.begin(), true)
    expect(l.current).toBe(5)
    for (let i = 0; i < 100; i++) l.landed(l.begin(), true)
    expect(l.current).toBe(6)
  })

  test('a pushback halves once per cooldown; writes begun before it grow nothing', () => {
    const l = new AdaptiveLimit({ initial: 16, cooldownMs: 1000 })
    const before = l.begin()
    l.pushback(10_000)
    l.pushback(10_500) // same storm
    expect(l.current).toBe(8)
    for (let i = 0; i < 50; i++) l.landed(before, true)
    expect(l.current).toBe(8)
    l.pushback(11_001)
    l.pushback(12_002)
    l.pushback(13_003)
    l.pushback(14_004)
    expect(l.current).toBe(1) // never below min
    expect(() => new AdaptiveLimit({ min: 0 })).toThrow('min')
  })

  test('forEachAdaptive keeps at most the current limit in flight and follows a pushback', async () => {
    const l = new AdaptiveLimit({ initial: 4, max: 4, cooldownMs: 0 })
    let running = 0
    let peak = 0
    const peaks: number[] = []
    await forEachAdaptive(Array.from({ length: 40 }, (_, i) => i), l, async (i) => {
      running++
      peak = Math.max(peak, running)
      // pushed back on every write from the tenth on: the limit stays near 1 (it grows +1 per round in between)
      if (i >= 10) l.pushback()
      if (i > 20) peaks.push(running)
      await new Promise((r) => setTimeout(r, 2))
      running--
    })
    expect(peak).toBe(4)
    expect(Math.max(...peaks)).toBeLessThanOrEqual(2)
    await forEachAdaptive([], l, () => Promise.resolve())
    const err = await forEachAdaptive(
      [1, 2, 3],
      l,
      (i) => i === 2 ? Promise.reject(new Error('boom')) : Promise.resolve(),
    )
      .catch((e) => e)
    expect(err.message).toBe('boom')
  })
})

describe('Slots', () => {
  test('at most `size` holders; the others in the order they came; a slot given back twice counts once', async () => {
    const slots = new Slots(2)
    const order: number[] = []
    const held: Array<() => void> = []
    const takers = [1, 2, 3, 4, 5].map((n) => slots.take().then((give) => (order.push(n), held.push(give))))
    await Promise.resolve()
    await Promise.resolve()
    expect(order).toEqual([1, 2])
    expect(slots.waiting).toBe(3)
    held[0]()
    held[0]() // again: nothing more is let in
    await new Promise((r) => setTimeout(r, 0))
    expect(order).toEqual([1, 2, 3])
    held[1]()
    held[2]()
    await Promise.all(takers)
    expect(order).toEqual([1, 2, 3, 4, 5])
    expect(() => new Slots(0)).toThrow('positive integer')
  })
})

describe('allSettled', () => {
  test('rejects with the first rejection only once every promise has settled (a batch ends with its last write)', async () => {
    const events: string[] = []
    const slow = new Promise<number>((r) => setTimeout(() => (events.push('slow settled'), r(2)), 100))
    const failing = Promise.reject(new Error('first'))
    const later = new Promise<number>((_, reject) => setTimeout(() => reject(new Error('second')), 50))
    const error = await allSettled([failing, slow, later]).catch((e: Error) => (events.push('rejected'), e))
    expect((error as Error).message).toBe('first')
    expect(events).toEqual(['slow settled', 'rejected'])
    expect(await allSettled([Promise.resolve(1), slow])).toEqual([1, 2])
  })
})
