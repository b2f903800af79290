// README's first command: `puffgres demo` runs the whole pipeline on a throwaway PostgreSQL + the local server.
import { expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { CLI } from './harness/child.ts'

test('puffgres demo runs end to end and cleans up', () => {
  const env = { ...process.env }
  for (const k of ['DATABASE_URL', 'TURBOPUFFER_API_KEY', 'TURBOPUFFER_BASE_URL', 'TURBOPUFFER_REGION']) delete env[k]
  const r = spawnSync(process.execPath, [CLI, 'demo', '--rows', '200'], { env, encoding: 'utf8', timeout: 120_000 })
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  expect(r.stdout).toContain('backfilled 180 member rows')
  expect(r.stdout).toContain('the namespace holds 180 documents')
  expect(r.stdout).toMatch(/INSERT id 201 +→ document \{"id":201,"name":"red trail running shoes"/)
  expect(r.stdout).toContain('it left the membership predicate: its document is gone')
  expect(r.stdout).toContain('the namespace holds 179 documents')
  // the freshly inserted row is the nearest neighbour of the query
  expect(r.stdout).toMatch(/nearest to "running shoes for trails":\n +201 +red trail running shoes/)
  expect(r.stdout).toContain('the throwaway PostgreSQL')
}, 120_000)
