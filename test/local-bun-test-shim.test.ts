// The matchers our tests rely on must fail when they should: this runs on Bun (real bun:test) and on Deno (the
// shim in test/harness/bun-test-shim.ts), so both agree on what passes.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'

const fails = (f: () => void) => expect(f).toThrow()

describe('expect', () => {
  const events: string[] = []
  beforeAll(() => void events.push('beforeAll'))
  beforeEach(() => void events.push('beforeEach'))
  afterAll(() => {
    if (events.join() !== 'beforeAll,beforeEach,beforeEach') throw new Error(`hooks ran as ${events.join()}`)
  })

  test('equality matchers pass and fail as bun:test does', () => {
    expect({ a: 1, b: undefined }).toEqual({ a: 1 })
    fails(() => expect({ a: 1, b: undefined }).toStrictEqual({ a: 1 }))
    fails(() => expect({ a: 1 }).toEqual({ a: 2 }))
    fails(() => expect([1, 2]).toEqual([1, 2, 3]))
    fails(() => expect(1).toBe(2))
    fails(() => expect('1').toBe(1 as unknown as string))
    expect({ a: 1, b: { c: [1, 2] } }).toMatchObject({ b: { c: [1, 2] } })
    fails(() => expect({ a: 1 }).toMatchObject({ a: 1, b: 2 }))
    expect([{ x: 1 }]).toContainEqual({ x: 1 })
    expect({ n: 1, s: 'abc' }).toEqual({ n: expect.any(Number), s: expect.stringContaining('b') })
    fails(() => expect(1).not.toBe(1))
  })

  test('other matchers, throw and promises', async () => {
    fails(() => expect(undefined).toBeDefined())
    fails(() => expect(0).toBeTruthy())
    fails(() => expect([1]).toHaveLength(2))
    fails(() => expect('abc').toMatch(/d/))
    fails(() => expect([1, 2]).toContain(3))
    fails(() => expect(3).toBeLessThan(2))
    fails(() => expect(0.3).toBeCloseTo(0.4))
    expect(0.1 + 0.2).toBeCloseTo(0.3, 10)
    fails(() => expect(() => {}).toThrow())
    fails(() =>
      expect(() => {
        throw new Error('boom')
      }).toThrow('bang')
    )
    expect(() => {
      throw new TypeError('boom')
    }).toThrow(TypeError)
    await expect(Promise.reject(new Error('nope'))).rejects.toThrow('nope')
    await expect(Promise.resolve(5)).resolves.toBe(5)
    let threw = false
    try {
      await expect(Promise.resolve(5)).rejects.toThrow()
    } catch {
      threw = true
    }
    expect(threw).toBe(true)
  })
})
