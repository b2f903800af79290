// A transform's `from 'puffgres'` resolves on Bun (the virtual module cli.ts registers) and on Deno (a sibling copy
// pointing at src/mod.ts), in every form the original README and ours use, with relative imports and
// import.meta.url lookups working as in the original file. Runs on both (scripts/test-deno.sh).
import { afterAll, expect, test } from 'bun:test'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as api from '../src/mod.ts'
import { loadTransform } from '../src/pipeline/transform/mod.ts'
import { MOD_URL, rewritePuffgresImports } from '../src/pipeline/transform/import.ts'
import { registerVirtualModule } from '../src/runtime.ts'

registerVirtualModule('puffgres', { ...api }) // as cli.ts does (a no-op on Deno)
const dir = mkdtempSync(join(tmpdir(), 'puffgres-timport-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
mkdirSync(join(dir, 'lib'))
writeFileSync(join(dir, 'lib', 'shout.ts'), `export const shout = (s: string) => s.toUpperCase()\n`)
writeFileSync(join(dir, 'greeting.txt'), 'hello')

const files: Record<string, string> = {
  'value-types.ts': `import { RowEvent, Action } from 'puffgres';
export default function transform(event: RowEvent): Action {
  return { type: 'upsert', attributes: { name: event.new.name } };
}
`,
  'define.ts': `import { defineTransform } from 'puffgres'
import { readFileSync } from 'node:fs'
import { shout } from './lib/shout.ts'
const greeting = readFileSync(new URL('./greeting.txt', import.meta.url), 'utf8')
export default defineTransform((event) => ({ type: 'upsert', attributes: { name: shout(greeting + ' ' + event.new!.name) } }))
`,
  'types-only.ts': `import type { RowEvent, Action } from "puffgres"
export default (event: RowEvent): Action => ({ type: 'upsert', attributes: { name: String(event.new!.name) } })
`,
}

for (const [file, source] of Object.entries(files)) {
  test(`${file} loads and runs`, async () => {
    writeFileSync(join(dir, file), source)
    const t = await loadTransform(join(dir, file))
    const out = t.fn({ type: 'insert', op: 'insert', id: 1, new: { id: 1, name: 'ada' } }) as any
    expect(out.type).toBe('upsert')
    expect(out.attributes.name).toBe(file === 'define.ts' ? 'HELLO ADA' : 'ada')
    // no copy left behind
    expect(readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([])
  })
}

test("the rewrite touches 'puffgres' specifiers only", () => {
  const src = `import { a } from 'puffgres'\nimport type { B } from "puffgres"\nimport x from 'puffgres-extra'\n` +
    `import y from 'puffgres/sub'\nconst m = await import('puffgres')\nconst s = 'puffgres'\n`
  expect(rewritePuffgresImports(src)).toBe(
    `import { a } from '${MOD_URL}'\nimport type { B } from "${MOD_URL}"\nimport x from 'puffgres-extra'\n` +
      `import y from 'puffgres/sub'\nconst m = await import('${MOD_URL}')\nconst s = 'puffgres'\n`,
  )
  expect(rewritePuffgresImports(`import x from './local.ts'\n`)).toBeUndefined()
})
