// Document ids: unsigned 64-bit integers (exact: beyond 2^53 they are bigints, see json.ts), UUIDs or strings of
// at most 64 bytes; one id type per namespace.
import { compareStrings } from './compare.ts'
import { show } from './errors.ts'
import { LIMITS, utf8Bytes, violation } from './rules.ts'

export type IdType = 'uint' | 'string' | 'uuid'
export type DocId = number | bigint | string

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i

export function isUuid(s: string): boolean {
  return UUID.test(s)
}

/** Checks one id against the namespace's id type (undefined: not fixed yet); returns the id's own type. */
export function checkId(id: unknown, idType: IdType | undefined): IdType {
  if (typeof id === 'number' || typeof id === 'bigint') {
    // a number that is not a safe integer was written as a fraction or exponent (json.ts reads long integers exactly)
    const ok = typeof id === 'bigint' ? id >= 0n && id <= LIMITS.maxUintId : Number.isSafeInteger(id) && id >= 0
    if (!ok) {
      throw violation('uint-id', `invalid id ${String(id)}: numeric ids must be unsigned integers from 0 to 2^64-1`)
    }
    if (idType && idType !== 'uint') throw mixed(id, 'uint', idType)
    return 'uint'
  }
  if (typeof id === 'string') {
    if (id.length === 0) throw violation('string-id', 'invalid id "": string ids must not be empty')
    if (utf8Bytes(id) > LIMITS.stringIdBytes) {
      throw violation('string-id', `invalid id ${show(id)}: string ids are at most ${LIMITS.stringIdBytes} bytes`)
    }
    if (idType === 'uint') throw mixed(id, 'string', idType)
    if (idType === 'uuid' && !isUuid(id)) throw mixed(id, 'string', idType)
    return idType ?? 'string'
  }
  throw violation('uint-id', `invalid id ${show(id)}: ids must be unsigned integers, UUIDs or strings`)
}

function mixed(id: unknown, got: string, idType: IdType) {
  const shown = typeof id === 'bigint' ? String(id) : show(id)
  return violation(
    'id-type-mixed',
    `mixing id types is not supported: the namespace has ${idType} ids, got the ${got} id ${shown}`,
  )
}

/** A map key that keeps 1 and "1" apart and treats UUID spellings alike. */
export function idKey(id: DocId, idType: IdType | undefined): string {
  if (typeof id !== 'string') return 'n' + id
  return 's' + (idType === 'uuid' ? id.toLowerCase().replaceAll('-', '') : id)
}

export function compareIds(a: DocId, b: DocId): number {
  if (typeof a !== 'string' && typeof b !== 'string') return a < b ? -1 : a > b ? 1 : 0
  if (typeof a === 'string' && typeof b === 'string') return compareStrings(a, b)
  return typeof a !== 'string' ? -1 : 1
}
