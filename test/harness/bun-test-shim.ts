// The parts of `bun:test` our tests use, on top of Deno.test, so the same test files run under Deno.
// Mapped in as "bun:test" by the import map in deno.test.json (see scripts/test-deno.sh).
// Deno runs every test file in its own isolate, so the module-level root scope below belongs to one file.

const D = (globalThis as any).Deno
if (!D) throw new Error('test/harness/bun-test-shim.ts is for Deno; under Bun import the real "bun:test"')

type Fn = () => unknown | Promise<unknown>

interface Scope {
  name: string
  parent?: Scope
  beforeAll: Fn[]
  afterAll: Fn[]
  beforeEach: Fn[]
  afterEach: Fn[]
  total: number
  done: number
  started: boolean
  skip: boolean
}

function newScope(name: string, parent?: Scope, skip = false): Scope {
  return {
    name,
    parent,
    beforeAll: [],
    afterAll: [],
    beforeEach: [],
    afterEach: [],
    total: 0,
    done: 0,
    started: false,
    skip,
  }
}

const root = newScope('')
let current = root

function chain(scope: Scope): Scope[] {
  const out: Scope[] = []
  for (let s: Scope | undefined = scope; s; s = s.parent) out.unshift(s)
  return out
}

function fullName(scope: Scope, name: string): string {
  return [...chain(scope).map((s) => s.name).filter(Boolean), name].join(' > ')
}

type TestOptions = { timeout?: number } | number | undefined

function register(name: string, fn: Fn | undefined, mode: 'run' | 'skip' | 'only' | 'todo', _opts?: TestOptions) {
  const scope = current
  const scopes = chain(scope)
  const ignore = mode === 'skip' || mode === 'todo' || !fn || scopes.some((s) => s.skip)
  if (!ignore) { for (const s of scopes) s.total++ }
  D.test({
    name: fullName(scope, name),
    ignore,
    only: mode === 'only',
    sanitizeOps: false,
    sanitizeResources: false,
    sanitizeExit: false,
    async fn() {
      let error: unknown
      try {
        for (const s of scopes) {
          if (!s.started) {
            s.started = true
            for (const h of s.beforeAll) await h()
          }
        }
        for (const s of scopes) for (const h of s.beforeEach) await h()
        try {
          await fn!()
        } finally {
          for (const s of [...scopes].reverse()) for (const h of s.afterEach) await h()
        }
      } catch (e) {
        error = e
      }
      // afterAll of a scope runs once its last test has finished, innermost first
      for (const s of [...scopes].reverse()) {
        s.done++
        if (s.done === s.total) {
          for (const h of s.afterAll) {
            try {
              await h()
            } catch (e) {
              error ??= e
            }
          }
        }
      }
      if (error !== undefined) throw error
    },
  })
}

type TestFn = {
  (name: string, fn: Fn, opts?: TestOptions): void
  skip(name: string, fn?: Fn, opts?: TestOptions): void
  only(name: string, fn: Fn, opts?: TestOptions): void
  todo(name: string, fn?: Fn): void
  if(cond: boolean): (name: string, fn: Fn, opts?: TestOptions) => void
  skipIf(cond: boolean): (name: string, fn: Fn, opts?: TestOptions) => void
}

export const test: TestFn = Object.assign(
  (name: string, fn: Fn, opts?: TestOptions) => register(name, fn, 'run', opts),
  {
    skip: (name: string, fn?: Fn, opts?: TestOptions) => register(name, fn, 'skip', opts),
    only: (name: string, fn: Fn, opts?: TestOptions) => register(name, fn, 'only', opts),
    todo: (name: string, fn?: Fn) => register(name, fn, 'todo'),
    if: (cond: boolean) => (name: string, fn: Fn, opts?: TestOptions) =>
      register(name, fn, cond ? 'run' : 'skip', opts),
    skipIf: (cond: boolean) => (name: string, fn: Fn, opts?: TestOptions) =>
      register(name, fn, cond ? 'skip' : 'run', opts),
  },
)
export const it = test

type DescribeFn = {
  (name: string, fn: () => void): void
  skip(name: string, fn: () => void): void
  only(name: string, fn: () => void): void
  if(cond: boolean): (name: string, fn: () => void) => void
  skipIf(cond: boolean): (name: string, fn: () => void) => void
}

function describeWith(name: string, fn: () => void, skip: boolean) {
  const parent = current
  current = newScope(name, parent, skip)
  try {
    const r = fn() as unknown
    if (r instanceof Promise) throw new Error(`describe('${name}') callback must be synchronous`)
  } finally {
    current = parent
  }
}

export const describe: DescribeFn = Object.assign((name: string, fn: () => void) => describeWith(name, fn, false), {
  skip: (name: string, fn: () => void) => describeWith(name, fn, true),
  // Deno's `only` is per test; a focused describe simply runs
  only: (name: string, fn: () => void) => describeWith(name, fn, false),
  if: (cond: boolean) => (name: string, fn: () => void) => describeWith(name, fn, !cond),
  skipIf: (cond: boolean) => (name: string, fn: () => void) => describeWith(name, fn, cond),
})

export function beforeAll(fn: Fn, _timeout?: number) {
  current.beforeAll.push(fn)
}
export function afterAll(fn: Fn, _timeout?: number) {
  current.afterAll.push(fn)
}
export function beforeEach(fn: Fn, _timeout?: number) {
  current.beforeEach.push(fn)
}
export function afterEach(fn: Fn, _timeout?: number) {
  current.afterEach.push(fn)
}

// ---- expect ----

class Asymmetric {
  constructor(readonly describe: string, readonly match: (v: unknown) => boolean) {}
}

function inspect(v: unknown): string {
  if (v instanceof Asymmetric) return v.describe
  return D.inspect(v, { depth: 6, colors: false, strAbbreviateSize: 400, iterableLimit: 50 })
}

function equals(a: unknown, b: unknown, strict: boolean): boolean {
  if (b instanceof Asymmetric) return b.match(a)
  if (a instanceof Asymmetric) return a.match(b)
  if (Object.is(a, b)) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (strict && Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime()
  if (a instanceof RegExp && b instanceof RegExp) return String(a) === String(b)
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    const x = a as unknown as ArrayLike<unknown>
    const y = b as unknown as ArrayLike<unknown>
    return x.length === y.length && Array.from(x).every((v, i) => Object.is(v, y[i]))
  }
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false
    for (const [k, v] of a) if (!b.has(k) || !equals(v, b.get(k), strict)) return false
    return true
  }
  if (a instanceof Set && b instanceof Set) {
    if (a.size !== b.size) return false
    for (const v of a) if (!b.has(v)) return false
    return true
  }
  const keys = (o: object) => Object.keys(o).filter((k) => strict || (o as Record<string, unknown>)[k] !== undefined)
  const ka = keys(a)
  const kb = keys(b)
  if (ka.length !== kb.length) return false
  for (const k of ka) {
    if (!Object.hasOwn(b, k) && !(strict === false && (a as any)[k] === undefined)) return false
    if (!equals((a as any)[k], (b as any)[k], strict)) return false
  }
  return true
}

function matchesObject(actual: unknown, expected: unknown): boolean {
  if (expected instanceof Asymmetric) return expected.match(actual)
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length &&
      expected.every((e, i) => matchesObject(actual[i], e))
  }
  if (typeof expected === 'object' && expected !== null && !(expected instanceof Date)) {
    if (typeof actual !== 'object' || actual === null) return false
    return Object.entries(expected).every(([k, v]) => k in actual && matchesObject((actual as any)[k], v))
  }
  return equals(actual, expected, false)
}

function errorMatches(err: unknown, expected: unknown): boolean {
  if (expected === undefined) return true
  const message = err instanceof Error ? err.message : String(err)
  if (typeof expected === 'string') return message.includes(expected)
  if (expected instanceof RegExp) return expected.test(message)
  if (typeof expected === 'function') return err instanceof (expected as new (...a: unknown[]) => unknown)
  if (typeof expected === 'object' && expected !== null) return matchesObject(err, expected)
  return false
}

class AssertionError extends Error {
  override name = 'AssertionError'
}

type Matchers = {
  not: Matchers
  resolves: AsyncMatchers
  rejects: AsyncMatchers
  toBe(expected: unknown): void
  toEqual(expected: unknown): void
  toStrictEqual(expected: unknown): void
  toMatchObject(expected: unknown): void
  toBeTruthy(): void
  toBeFalsy(): void
  toBeNull(): void
  toBeUndefined(): void
  toBeDefined(): void
  toBeNaN(): void
  toBeInstanceOf(cls: unknown): void
  toContain(item: unknown): void
  toContainEqual(item: unknown): void
  toHaveLength(n: number): void
  toHaveProperty(path: string | string[], value?: unknown): void
  toMatch(pattern: string | RegExp): void
  toThrow(expected?: unknown): void
  toBeGreaterThan(n: number | bigint): void
  toBeGreaterThanOrEqual(n: number | bigint): void
  toBeLessThan(n: number | bigint): void
  toBeLessThanOrEqual(n: number | bigint): void
  toBeCloseTo(n: number, digits?: number): void
}
type AsyncMatchers =
  & { [K in Exclude<keyof Matchers, 'not' | 'resolves' | 'rejects'>]: (...a: any[]) => Promise<void> }
  & {
    not: AsyncMatchers
  }

function makeMatchers(actual: unknown, negate: boolean): Matchers {
  const check = (pass: boolean, what: string, expected?: unknown, hasExpected = true) => {
    if (pass === negate) {
      const exp = hasExpected ? ` ${inspect(expected)}` : ''
      throw new AssertionError(`expected ${inspect(actual)} ${negate ? 'not ' : ''}${what}${exp}`)
    }
  }
  const m: Omit<Matchers, 'not' | 'resolves' | 'rejects'> = {
    toBe: (e) => check(Object.is(actual, e), 'to be', e),
    toEqual: (e) => check(equals(actual, e, false), 'to equal', e),
    toStrictEqual: (e) => check(equals(actual, e, true), 'to strictly equal', e),
    toMatchObject: (e) => check(matchesObject(actual, e), 'to match object', e),
    toBeTruthy: () => check(!!actual, 'to be truthy', undefined, false),
    toBeFalsy: () => check(!actual, 'to be falsy', undefined, false),
    toBeNull: () => check(actual === null, 'to be null', undefined, false),
    toBeUndefined: () => check(actual === undefined, 'to be undefined', undefined, false),
    toBeDefined: () => check(actual !== undefined, 'to be defined', undefined, false),
    toBeNaN: () => check(Number.isNaN(actual), 'to be NaN', undefined, false),
    toBeInstanceOf: (cls) => check(actual instanceof (cls as any), 'to be an instance of', (cls as any)?.name),
    toContain: (item) => {
      const pass = typeof actual === 'string'
        ? actual.includes(item as string)
        : Array.from(actual as Iterable<unknown>).some((x) => x === item)
      check(pass, 'to contain', item)
    },
    toContainEqual: (item) =>
      check(Array.from(actual as Iterable<unknown>).some((x) => equals(x, item, false)), 'to contain equal', item),
    toHaveLength: (n) => check((actual as { length?: number })?.length === n, 'to have length', n),
    toHaveProperty: (path, value) => {
      const parts = Array.isArray(path) ? path : path.split('.')
      let cur: any = actual
      let found = true
      for (const p of parts) {
        if (cur === null || cur === undefined || !(p in Object(cur))) {
          found = false
          break
        }
        cur = cur[p]
      }
      const pass = found && (value === undefined || equals(cur, value, false))
      check(pass, `to have property ${parts.join('.')}`, value, value !== undefined)
    },
    toMatch: (p) => {
      const pass = typeof actual === 'string' && (typeof p === 'string' ? actual.includes(p) : p.test(actual))
      check(pass, 'to match', p)
    },
    toThrow: (expected) => {
      if (typeof actual !== 'function') throw new AssertionError('toThrow needs a function')
      let threw = false
      let err: unknown
      let r: unknown
      try {
        r = actual()
      } catch (e) {
        threw = true
        err = e
      }
      if (r instanceof Promise) throw new AssertionError('toThrow got an async function: use rejects.toThrow')
      const pass = threw && errorMatches(err, expected)
      if (pass === negate) {
        const got = threw ? `threw ${inspect(err instanceof Error ? err.message : err)}` : 'did not throw'
        throw new AssertionError(
          `expected function ${negate ? 'not ' : ''}to throw${
            expected === undefined ? '' : ' ' + inspect(expected)
          }, ${got}`,
        )
      }
    },
    toBeGreaterThan: (n) => check((actual as number) > n, 'to be greater than', n),
    toBeGreaterThanOrEqual: (n) => check((actual as number) >= n, 'to be greater than or equal to', n),
    toBeLessThan: (n) => check((actual as number) < n, 'to be less than', n),
    toBeLessThanOrEqual: (n) => check((actual as number) <= n, 'to be less than or equal to', n),
    toBeCloseTo: (n, digits = 2) =>
      check(Math.abs((actual as number) - n) < 10 ** -digits / 2, `to be close to (${digits} digits)`, n),
  }
  return {
    ...m,
    get not() {
      return makeMatchers(actual, !negate)
    },
    get resolves() {
      return asyncMatchers(actual, 'resolves', negate)
    },
    get rejects() {
      return asyncMatchers(actual, 'rejects', negate)
    },
  } as Matchers
}

function asyncMatchers(actual: unknown, mode: 'resolves' | 'rejects', negate: boolean): AsyncMatchers {
  const settle = async () => {
    const p = typeof actual === 'function' ? (actual as () => unknown)() : actual
    try {
      const v = await p
      if (mode === 'rejects') throw new AssertionError(`expected promise to reject, it resolved with ${inspect(v)}`)
      return v
    } catch (e) {
      if (e instanceof AssertionError) throw e
      if (mode === 'resolves') throw new AssertionError(`expected promise to resolve, it rejected with ${inspect(e)}`)
      return e
    }
  }
  return new Proxy({} as AsyncMatchers, {
    get(_t, prop: string) {
      if (prop === 'not') return asyncMatchers(actual, mode, !negate)
      if (prop === 'then') return undefined
      return async (...args: unknown[]) => {
        const v = await settle()
        // rejects.toThrow(x) checks the rejection reason as if it had been thrown
        const target = mode === 'rejects' && prop === 'toThrow'
          ? () => {
            throw v
          }
          : v
        ;(makeMatchers(target, negate) as any)[prop](...args)
      }
    },
  })
}

type Expect = {
  (actual: unknown): Matchers
  any(cls: unknown): any
  anything(): any
  stringContaining(s: string): any
  stringMatching(r: string | RegExp): any
  arrayContaining(items: unknown[]): any
  objectContaining(o: Record<string, unknown>): any
}

export const expect: Expect = Object.assign((actual: unknown) => makeMatchers(actual, false), {
  any: (cls: any) =>
    new Asymmetric(`Any<${cls?.name}>`, (v) => {
      if (cls === Number) return typeof v === 'number'
      if (cls === String) return typeof v === 'string'
      if (cls === Boolean) return typeof v === 'boolean'
      if (cls === BigInt) return typeof v === 'bigint'
      if (cls === Function) return typeof v === 'function'
      return v instanceof cls
    }),
  anything: () => new Asymmetric('Anything', (v) => v !== null && v !== undefined),
  stringContaining: (s: string) =>
    new Asymmetric(`StringContaining ${s}`, (v) => typeof v === 'string' && v.includes(s)),
  stringMatching: (r: string | RegExp) =>
    new Asymmetric(`StringMatching ${r}`, (v) => typeof v === 'string' && new RegExp(r).test(v)),
  arrayContaining: (items: unknown[]) =>
    new Asymmetric(
      `ArrayContaining ${inspect(items)}`,
      (v) => Array.isArray(v) && items.every((i) => v.some((x) => equals(x, i, false))),
    ),
  objectContaining: (o: Record<string, unknown>) =>
    new Asymmetric(`ObjectContaining ${inspect(o)}`, (v) => matchesObject(v, o)),
})
