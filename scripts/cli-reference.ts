// README's CLI reference, generated from the same definitions as `puffgres --help`: mainHelp() and each command's
// help text in src/commands/index.ts. It goes between the markers <!-- cli-reference:start --> and
// <!-- cli-reference:end -->.
//   bun scripts/cli-reference.ts           print the generated section
//   bun scripts/cli-reference.ts --write   rewrite README.md's section
//   bun scripts/cli-reference.ts --check   exit 1 when README.md's section differs
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import process from 'node:process'
import { mainHelp } from '../src/cli.ts'
import { commands } from '../src/commands/index.ts'

export const START = '<!-- cli-reference:start -->'
export const END = '<!-- cli-reference:end -->'
export const README = join(import.meta.dirname!, '..', 'README.md')

/** A fenced block that no run of backticks inside the text can close early. */
function fence(text: string): string {
  const longest = Math.max(2, ...(text.match(/`+/g) ?? []).map((r) => r.length))
  const f = '`'.repeat(longest + 1)
  return `${f}text\n${text.trimEnd()}\n${f}`
}

/** The text between the markers (without them). */
export function renderCliReference(): string {
  const parts = [
    '<!-- generated from src/commands/index.ts by `bun scripts/cli-reference.ts --write`; do not edit by hand -->',
    fence(mainHelp()),
    ...commands.map((c) => `### puffgres ${c.name}\n\n${fence(c.help)}`),
  ]
  return `\n${parts.join('\n\n')}\n`
}

/** README's current text between the markers; throws when the markers are missing or out of order. */
export function readmeSection(readme: string): string {
  const start = readme.indexOf(START)
  const end = readme.indexOf(END)
  if (start < 0 || end < start) throw new Error(`README.md: the markers ${START} … ${END} are missing`)
  return readme.slice(start + START.length, end)
}

export function replaceSection(readme: string, section: string): string {
  readmeSection(readme) // checks the markers
  const start = readme.indexOf(START) + START.length
  return readme.slice(0, start) + section + readme.slice(readme.indexOf(END))
}

function main(argv: string[]): number {
  const generated = renderCliReference()
  if (argv.includes('--write') || argv.includes('--check')) {
    const readme = readFileSync(README, 'utf8')
    const current = readmeSection(readme)
    if (current === generated) return 0
    if (argv.includes('--check')) {
      console.error('README.md: the CLI reference is out of date: run `bun scripts/cli-reference.ts --write`')
      return 1
    }
    writeFileSync(README, replaceSection(readme, generated))
    console.log('README.md: CLI reference updated')
    return 0
  }
  process.stdout.write(generated)
  return 0
}

if (import.meta.main) process.exit(main(process.argv.slice(2)))
