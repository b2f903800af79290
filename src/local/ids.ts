// Document ids: unsigned integers, UUIDs or strings of at most 64 bytes; one id type per namespace.
import { compareStrings } from './compare.ts'
import { badRequest, show } from './errors.ts'

export type IdType = 'uint' | 'string' | 'uuid'
export type DocId = number | string

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i
const encoder = new TextEncoder()

export function isUuid(s: string): boolean {
  return UUID.test(s)
}

/** Checks one id against the namespace's id type (undefined: not fixed yet); returns the id's own type. */
export function checkId(id: unknown, idType: IdType | undefined): IdType {
  if (typeof id === 'number') {
    if (!Number.isSafeInteger(id) || id < 0) {
      throw badRequest(`invalid id ${show(id)}: numeric ids must be unsigned integers (at most 2^53 here)`)
    }
    if (idType && idType !== 'uint') throw badRequest(`invalid id ${show(id)}: this namespace has ${idType} ids`)
    return 'uint'
  }
  if (typeof id === 'string') {
    if (id.length === 0) throw badRequest('invalid id "": ids must not be empty')
    if (encoder.encode(id).length > 64) throw badRequest(`invalid id ${show(id)}: string ids are at most 64 bytes`)
    if (idType === 'uint') throw badRequest(`invalid id ${show(id)}: this namespace has uint ids`)
    if (idType === 'uuid' && !isUuid(id)) throw badRequest(`invalid id ${show(id)}: this namespace has uuid ids`)
    return idType ?? 'string'
  }
  throw badRequest(`invalid id ${show(id)}: ids must be unsigned integers, UUIDs or strings`)
}

/** A map key that keeps 1 and "1" apart and treats UUID spellings alike. */
export function idKey(id: DocId, idType: IdType | undefined): string {
  if (typeof id === 'number') return 'n' + id
  return 's' + (idType === 'uuid' ? id.toLowerCase().replaceAll('-', '') : id)
}

export function compareIds(a: DocId, b: DocId): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b
  if (typeof a === 'string' && typeof b === 'string') return compareStrings(a, b)
  return typeof a === 'number' ? -1 : 1
}
