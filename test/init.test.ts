import { afterAll, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../src/config/load.ts'
import { fileURLToPath } from 'node:url'
import { cliCommand } from './harness/child.ts'
import { runCli } from './harness/cli.ts'

const dir = mkdtempSync(join(tmpdir(), 'puffgres-init-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

test('init scaffolds a project that loads, and refuses to overwrite', async () => {
  const r = await runCli(['init', dir])
  expect(r.code).toBe(0)
  for (
    const f of [
      'puffgres.toml',
      '.env.example',
      'puffgres/migrations/001_example.toml',
      'puffgres/transforms/example.ts',
      'puffgres/puffgres.d.ts',
    ]
  ) {
    expect(existsSync(join(dir, f))).toBe(true)
  }
  const c = loadConfig(join(dir, 'puffgres.toml'), { DATABASE_URL: 'postgres://x', TURBOPUFFER_API_KEY: 'k' })
  expect(c.mappings.map((m) => m.name)).toEqual(['products'])
  expect(c.mappings[0].membershipText).toBe("status = 'active'")

  writeFileSync(join(dir, 'puffgres/transforms/example.ts'), '// mine\n')
  const again = await runCli(['init', dir])
  expect(again.code).toBe(1)
  expect(again.err).toMatch(/refusing to overwrite .*puffgres\.toml/)
  expect(readFileSync(join(dir, 'puffgres/transforms/example.ts'), 'utf8')).toBe('// mine\n')
})

test("the scaffolded transform type-checks against the scaffolded types (import type from 'puffgres')", () => {
  const d = mkdtempSync(join(tmpdir(), 'puffgres-init-tc-'))
  try {
    spawnSync(...cliCommand(['init', d]))
    const deno = fileURLToPath(new URL('../node_modules/.bin/deno', import.meta.url))
    // Deno resolves the bare 'puffgres' specifier through an import map, as an editor would through tsconfig paths
    writeFileSync(join(d, 'deno.json'), JSON.stringify({ imports: { puffgres: './puffgres/puffgres.d.ts' } }))
    const ok = spawnSync(deno, ['check', '--quiet', 'puffgres/transforms/example.ts'], { cwd: d, encoding: 'utf8' })
    expect(ok.stderr + ok.stdout).toBe('')
    expect(ok.status).toBe(0)
    writeFileSync(
      join(d, 'puffgres/transforms/bad.ts'),
      `import type { Action } from 'puffgres'
export default (): Action => ({ type: 'upsert', attributes: 5 })\n`,
    )
    const bad = spawnSync(deno, ['check', '--quiet', 'puffgres/transforms/bad.ts'], { cwd: d, encoding: 'utf8' })
    expect(bad.status).not.toBe(0)
  } finally {
    rmSync(d, { recursive: true, force: true })
  }
})
