// One rule for every boolean flag of every command (parseFlags), as the original puffgres's README uses them.
import { expect, test } from 'bun:test'
import { parseFlags, UsageError } from '../src/commands/flags.ts'

const spec = { 'create-slot': { type: 'boolean' }, slot: { type: 'string' }, resume: { type: 'boolean' } } as const

test('bare, =BOOL, a following true/false, --no-, last one wins', () => {
  const v = (...a: string[]) => parseFlags(a, spec, { allowPositionals: true }).values['create-slot']
  expect(v()).toBeUndefined()
  expect(v('--create-slot')).toBe(true)
  expect(v('--create-slot=false')).toBe(false)
  expect(v('--create-slot=yes')).toBe(true)
  expect(v('--create-slot', 'false')).toBe(false)
  expect(v('--no-create-slot')).toBe(false)
  expect(v('--no-create-slot', '--create-slot')).toBe(true)
  expect(v('--create-slot', '--no-create-slot')).toBe(false)
})

test('positionals stay; a string flag takes its value', () => {
  const r = parseFlags(['users', '--resume', '--slot', 'false', 'more'], spec, { allowPositionals: true })
  expect(r.positionals).toEqual(['users', 'more'])
  expect(r.values).toEqual({ resume: true, slot: 'false' })
})

test('bad values and unknown flags are usage errors', () => {
  expect(() => parseFlags(['--create-slot=maybe'], spec)).toThrow(UsageError)
  expect(() => parseFlags(['--create-slot=maybe'], spec)).toThrow('--create-slot: expected true or false, got "maybe"')
  expect(() => parseFlags(['--no-create-slot=true'], spec)).toThrow(/Unknown option '--no-create-slot'/)
  expect(() => parseFlags(['--nope'], spec)).toThrow(/Unknown option '--nope'/)
  expect(() => parseFlags(['users'], spec)).toThrow(/Unexpected argument 'users'/)
})
