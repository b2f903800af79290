// README's first command: `puffgres demo` runs the whole pipeline on a throwaway PostgreSQL + the local server.
import { expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { cliCommand } from './harness/child.ts'

test('puffgres demo runs end to end and cleans up', () => {
  const env = { ...process.env }
  for (const k of ['DATABASE_URL', 'TURBOPUFFER_API_KEY', 'TURBOPUFFER_BASE_URL', 'TURBOPUFFER_REGION']) delete env[k]
  const r = spawnSync(...cliCommand(['demo', '--rows', '200']), { env, encoding: 'utf8', timeout: 120_000 })
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

test('puffgres demo uses DATABASE_URL and TURBOPUFFER_BASE_URL when they are set, and leaves them clean', async () => {
  const { testDatabase } = await import('./harness/pg.ts')
  const { startLocalServer } = await import('../src/local/server.ts')
  const db = await testDatabase('demo')
  const server = await startLocalServer()
  try {
    const env = { ...process.env, DATABASE_URL: db.url, TURBOPUFFER_BASE_URL: server.url, TURBOPUFFER_API_KEY: 'k' }
    const { spawn } = await import('node:child_process')
    const child = spawn(...cliCommand(['demo', '--rows', '50']), { env })
    let out = ''
    child.stdout.on('data', (d) => out += d)
    child.stderr.on('data', (d) => out += d)
    const code = await new Promise((r) => child.on('exit', r))
    expect(out).toContain('using DATABASE_URL')
    expect(out).toContain(`using turbopuffer at ${server.url}`)
    expect(code).toBe(0)
    expect(out).toContain('the namespace holds 45 documents')
    // cleaned up: no demo table, slot or publication left, and the namespace is gone
    expect(await db.sql`SELECT 1 FROM pg_class WHERE relname = 'puffgres_demo_products'`).toHaveLength(0)
    expect(await db.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'puffgres_demo'`).toHaveLength(0)
    expect(await db.sql`SELECT 1 FROM pg_publication WHERE pubname = 'puffgres_demo_pub'`).toHaveLength(0)
    expect(server.documents('puffgres_demo_products')).toHaveLength(0)
  } finally {
    await server.stop()
    await db.drop()
  }
}, 120_000)
