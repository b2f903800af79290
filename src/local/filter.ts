// Compiles turbopuffer filters (`[attr, op, value]`, `["And"|"Or", [...]]`, `["Not", f]`) into predicates.
// Null semantics: a missing attribute is null; `Eq null` matches it, ordering comparisons with null never match,
// and the negated operators (NotEq, NotIn, NotContains, NotContainsAny, NotGlob, NotIGlob) are exact negations.
import { compareScalars, deepEqual } from './compare.ts'
import { badRequest, show } from './errors.ts'
import type { IdType } from './ids.ts'
import type { Doc } from './namespace.ts'
import { fitsType, orderKey, type Schema } from './schema.ts'

/** `refNew` is the document being written, for `{"$ref_new": attr}` values in write conditions (null for deletes). */
export type Predicate = (doc: Doc, refNew: Record<string, unknown> | null) => boolean

const FULL_TEXT = new Set(['ContainsAllTokens', 'ContainsAnyToken', 'ContainsTokenSequence', 'Fuzzy'])
const ORDERING: Record<string, (c: number) => boolean> = {
  Lt: (c) => c < 0,
  Lte: (c) => c <= 0,
  Gt: (c) => c > 0,
  Gte: (c) => c >= 0,
}

function isRefNew(v: unknown): v is { $ref_new: string } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && '$ref_new' in v
}

export function compileFilter(filter: unknown, schema: Schema, idType?: IdType): Predicate {
  if (!Array.isArray(filter) || filter.length < 2) {
    throw badRequest(`invalid filter ${show(filter)}: expected [attribute, operator, value] or [And|Or|Not, ...]`)
  }
  const [head, second] = filter
  if (filter.length === 2 && (head === 'And' || head === 'Or')) {
    if (!Array.isArray(second)) throw badRequest(`invalid filter ${show(filter)}: ${head} takes a list of filters`)
    const parts = second.map((f) => compileFilter(f, schema, idType))
    return head === 'And' ? (doc, ref) => parts.every((p) => p(doc, ref)) : (doc, ref) => parts.some((p) => p(doc, ref))
  }
  if (filter.length === 2 && head === 'Not') {
    const inner = compileFilter(second, schema, idType)
    return (doc, ref) => !inner(doc, ref)
  }
  if (filter.length !== 3 && !(filter.length === 4 && FULL_TEXT.has(second))) {
    throw badRequest(`invalid filter ${show(filter)}: expected [attribute, operator, value]`)
  }
  const [attr, op, value] = filter
  if (typeof attr !== 'string' || typeof op !== 'string') {
    throw badRequest(`invalid filter ${show(filter)}: attribute and operator must be strings`)
  }
  if (attr === 'vector') throw badRequest(`invalid filter ${show(filter)}: vectors cannot be filtered on`)
  if (FULL_TEXT.has(op)) {
    throw badRequest(`filter operator ${op} is not supported by the local turbopuffer server (no full-text search)`)
  }
  const type = attr === 'id' ? idType : Object.hasOwn(schema, attr) ? schema[attr].type : undefined
  checkLiteral(filter, op, type, value)
  const get = (doc: Doc) => (attr === 'id' ? doc.id : Object.hasOwn(doc, attr) ? doc[attr] ?? null : null)
  const val = isRefNew(value)
    ? (
      ref: Record<string, unknown> | null,
    ) => (ref && Object.hasOwn(ref, value.$ref_new) ? ref[value.$ref_new] ?? null : null)
    : () => value
  const key = (v: unknown) => orderKey(type, v)
  const eq = (a: unknown, b: unknown) => a !== null && b !== null && deepEqual(keyDeep(a), keyDeep(b))
  const keyDeep = (v: unknown): unknown => (Array.isArray(v) ? v.map(key) : key(v))
  const elems = (a: unknown): unknown[] => (Array.isArray(a) ? a : [])

  switch (op) {
    case 'Eq':
    case 'NotEq': {
      const yes = op === 'Eq'
      return (doc, ref) => {
        const a = get(doc)
        const b = val(ref)
        return (b === null ? a === null : eq(a, b)) === yes
      }
    }
    case 'In':
    case 'NotIn': {
      const yes = op === 'In'
      // a literal list of scalars: one Set lookup instead of a scan (a write's `id NotIn [thousands of ids]`); the
      // same answer, as equality of scalars is ===
      const keys = Array.isArray(value) ? value.map((b) => (b === null ? b : key(b))) : undefined
      if (keys?.every((k) => k === null || (typeof k !== 'object' && k === k))) {
        const set = new Set(keys)
        return (doc) => {
          const a = get(doc)
          return (a === null ? set.has(null) : !Array.isArray(a) && set.has(key(a))) === yes
        }
      }
      return (doc, ref) => {
        const a = get(doc)
        const list = val(ref)
        const hit = Array.isArray(list) && list.some((b) => (b === null ? a === null : eq(a, b)))
        return hit === yes
      }
    }
    case 'Lt':
    case 'Lte':
    case 'Gt':
    case 'Gte': {
      const test = ORDERING[op]
      return (doc, ref) => {
        const a = get(doc)
        const b = val(ref)
        if (a === null || b === null) return false
        const c = compareScalars(key(a), key(b))
        return !Number.isNaN(c) && test(c)
      }
    }
    case 'AnyLt':
    case 'AnyLte':
    case 'AnyGt':
    case 'AnyGte': {
      const test = ORDERING[op.slice(3)]
      return (doc, ref) => {
        const b = val(ref)
        if (b === null) return false
        return elems(get(doc)).some((x) => {
          const c = compareScalars(key(x), key(b))
          return !Number.isNaN(c) && test(c)
        })
      }
    }
    case 'Contains':
    case 'NotContains': {
      const yes = op === 'Contains'
      return (doc, ref) => {
        const b = val(ref)
        return elems(get(doc)).some((x) => eq(x, b)) === yes
      }
    }
    case 'ContainsAny':
    case 'NotContainsAny': {
      const yes = op === 'ContainsAny'
      return (doc, ref) => {
        const list = val(ref)
        const have = elems(get(doc))
        const hit = Array.isArray(list) && list.some((b) => have.some((x) => eq(x, b)))
        return hit === yes
      }
    }
    case 'Glob':
    case 'NotGlob':
    case 'IGlob':
    case 'NotIGlob':
    case 'Regex': {
      const yes = !op.startsWith('Not')
      const flags = op.endsWith('IGlob') ? 'is' : 's'
      const cache = new Map<string, RegExp>()
      const regex = (pattern: string) => {
        let r = cache.get(pattern)
        if (!r) {
          r = op === 'Regex' ? compileRegex(pattern) : globToRegExp(pattern, flags)
          cache.set(pattern, r)
        }
        return r
      }
      if (typeof value === 'string') regex(value)
      return (doc, ref) => {
        const a = get(doc)
        const pattern = val(ref)
        const hit = typeof a === 'string' && typeof pattern === 'string' && regex(pattern).test(a)
        return hit === yes
      }
    }
    default:
      throw badRequest(`invalid filter ${show(filter)}: unknown operator ${show(op)}`)
  }
}

/** Rejects a literal that cannot match the attribute's type, as turbopuffer does (a typo'd filter is a 400). */
function checkLiteral(filter: unknown[], op: string, type: string | undefined, value: unknown): void {
  if (isRefNew(value)) {
    if (typeof value.$ref_new !== 'string') throw badRequest(`invalid filter ${show(filter)}: bad $ref_new`)
    return
  }
  const listOps = ['In', 'NotIn', 'ContainsAny', 'NotContainsAny']
  if (listOps.includes(op) && !Array.isArray(value)) {
    throw badRequest(`invalid filter ${show(filter)}: ${op} takes a list of values`)
  }
  if (/Glob$|^Regex$/.test(op) && typeof value !== 'string') {
    throw badRequest(`invalid filter ${show(filter)}: ${op} takes a string pattern`)
  }
  if (type === undefined) return
  const isArray = type.startsWith('[]')
  const elem = isArray ? type.slice(2) : type
  const fail = (why: string) => badRequest(`invalid filter ${show(filter)}: ${why}`)
  const fits = (t: string, v: unknown) => v === null || fitsType(t, v)
  switch (op) {
    case 'Eq':
    case 'NotEq':
      if (!fits(type, value)) throw fail(`value does not fit attribute type ${type}`)
      return
    case 'In':
    case 'NotIn':
      if (!(value as unknown[]).every((v) => fits(type, v))) throw fail(`values do not fit attribute type ${type}`)
      return
    case 'Lt':
    case 'Lte':
    case 'Gt':
    case 'Gte':
      if (isArray) throw fail(`${op} needs a scalar attribute; use Any${op} for ${type}`)
      if (!fits(type, value)) throw fail(`value does not fit attribute type ${type}`)
      return
    case 'AnyLt':
    case 'AnyLte':
    case 'AnyGt':
    case 'AnyGte':
    case 'Contains':
    case 'NotContains':
      if (!isArray) throw fail(`${op} needs an array attribute, this one is ${type}`)
      if (!fits(elem, value)) throw fail(`value does not fit element type ${elem}`)
      return
    case 'ContainsAny':
    case 'NotContainsAny':
      if (!isArray) throw fail(`${op} needs an array attribute, this one is ${type}`)
      if (!(value as unknown[]).every((v) => fits(elem, v))) throw fail(`values do not fit element type ${elem}`)
      return
    default:
      if (/Glob$|^Regex$/.test(op) && type !== 'string') {
        throw fail(`${op} needs a string attribute, this one is ${type}`)
      }
  }
}

function compileRegex(pattern: string): RegExp {
  try {
    return new RegExp(pattern)
  } catch (e) {
    throw badRequest(`invalid regex ${show(pattern)}: ${(e as Error).message}`)
  }
}

/** Unix glob (`*`, `?`, `[abc]`, `[!a-z]`, `\x` escapes) → an anchored RegExp. */
export function globToRegExp(glob: string, flags = 's'): RegExp {
  let out = '^'
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]
    if (c === '*') out += '.*'
    else if (c === '?') out += '.'
    else if (c === '\\' && i + 1 < glob.length) out += escapeRegExp(glob[++i])
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2)
      if (end === -1) {
        out += '\\['
        continue
      }
      let body = glob.slice(i + 1, end)
      const negate = body.startsWith('!') || body.startsWith('^')
      if (negate) body = body.slice(1)
      out += '[' + (negate ? '^' : '') + body.replace(/[\\\]^]/g, '\\$&') + ']'
      i = end
    } else out += escapeRegExp(c)
  }
  return new RegExp(out + '$', flags)
}

function escapeRegExp(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')
}
