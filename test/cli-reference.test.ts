// README's CLI reference must be what scripts/cli-reference.ts generates from the command table.
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { mainHelp } from '../src/cli.ts'
import { commands } from '../src/commands/index.ts'
import { README, readmeSection, renderCliReference, replaceSection } from '../scripts/cli-reference.ts'

describe('CLI reference', () => {
  test('README.md is up to date', () => {
    const current = readmeSection(readFileSync(README, 'utf8'))
    if (current !== renderCliReference()) {
      throw new Error('README.md: the CLI reference is out of date: run `bun scripts/cli-reference.ts --write`')
    }
  })

  test("it holds --help and every command's help", () => {
    const text = renderCliReference()
    expect(text).toContain(mainHelp().trimEnd())
    for (const c of commands) {
      expect(text).toContain(`### puffgres ${c.name}\n`)
      expect(text).toContain(c.help.trimEnd())
    }
  })

  test('replacing the section keeps the rest of the file', () => {
    const doc = 'before\n<!-- cli-reference:start -->\nold\n<!-- cli-reference:end -->\nafter\n'
    const out = replaceSection(doc, '\nnew\n')
    expect(out).toBe('before\n<!-- cli-reference:start -->\nnew\n<!-- cli-reference:end -->\nafter\n')
    expect(readmeSection(out)).toBe('\nnew\n')
    expect(() => readmeSection('no markers')).toThrow('markers')
  })
})
