// Logs: level from PUFFGRES_LOG / RUST_LOG, JSON lines or human text, secrets never written, and every line about
// a row names its mapping and id.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../src/config/load.ts'
import { createLogger, levelFromEnv } from '../src/log.ts'
import type { Intent } from '../src/pipeline/changes.ts'
import { rowKey } from '../src/pipeline/row-key.ts'
import { createTransformRunner } from '../src/pipeline/transform/mod.ts'
import { writeIntents } from '../src/pipeline/writer.ts'
import { ensureStateTables } from '../src/postgres/state.ts'
import { DiscardSink } from '../src/turbopuffer/discard.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration } from './harness/project.ts'

describe('log level and format', () => {
  test('PUFFGRES_LOG and RUST_LOG-style targets', () => {
    expect(levelFromEnv({})).toBe('info')
    expect(levelFromEnv({ PUFFGRES_LOG: 'debug' })).toBe('debug')
    expect(levelFromEnv({ PUFFGRES_LOG: 'WARN' })).toBe('warn')
    expect(levelFromEnv({ RUST_LOG: 'puffgres=debug' })).toBe('debug')
    expect(levelFromEnv({ RUST_LOG: 'tokio=debug,puffgres=error' })).toBe('error')
    expect(levelFromEnv({ RUST_LOG: 'tokio=debug' })).toBe('info')
    expect(levelFromEnv({ RUST_LOG: 'trace' })).toBe('debug')
    expect(levelFromEnv({ PUFFGRES_LOG: 'error', RUST_LOG: 'debug' })).toBe('error')
  })

  test('JSON lines with time, level, message and fields; lower levels dropped', () => {
    const lines: string[] = []
    const log = createLogger({ json: true, level: 'info', write: (l) => lines.push(l) })
    log.debug('hidden')
    log.info('hello', { mapping: 'items', id: 7, lsn: 12n })
    expect(lines).toHaveLength(1)
    const j = JSON.parse(lines[0])
    expect(j).toMatchObject({ level: 'info', msg: 'hello', mapping: 'items', id: 7, lsn: '12' })
    expect(Date.parse(j.ts)).toBeGreaterThan(0)
  })

  test('human text on a terminal', () => {
    const lines: string[] = []
    const log = createLogger({ json: false, level: 'debug', write: (l) => lines.push(l) })
    log.info('streaming', { slot: 'puffgres' })
    log.warn('row sent to the dead-letter queue', { mapping: 'items', id: '2', n: { a: 1 } })
    expect(lines).toEqual([
      'streaming  slot=puffgres',
      'WARN row sent to the dead-letter queue  mapping=items id=2 n={"a":1}',
    ])
  })

  test('by default: human text when stderr is a terminal, JSON lines otherwise', () => {
    const had = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY')
    const withTty = (tty: boolean) => {
      Object.defineProperty(process.stderr, 'isTTY', { value: tty, configurable: true, writable: true })
      const lines: string[] = []
      createLogger({ level: 'info', write: (l) => lines.push(l) }).info('streaming', { slot: 'puffgres' })
      return lines
    }
    try {
      expect(withTty(true)).toEqual(['streaming  slot=puffgres'])
      const [line] = withTty(false)
      expect(JSON.parse(line)).toMatchObject({ level: 'info', msg: 'streaming', slot: 'puffgres' })
    } finally {
      if (had) Object.defineProperty(process.stderr, 'isTTY', had)
      else delete (process.stderr as { isTTY?: boolean }).isTTY
    }
  })

  test('secrets are never written: secret-named fields and passwords inside URLs', () => {
    const lines: string[] = []
    const log = createLogger({ json: true, level: 'debug', write: (l) => lines.push(l) })
    log.error('connect to postgres://app:hunter2@db:5432/x failed', {
      password: 'hunter2',
      api_key: 'tpuf_abc',
      Authorization: 'Bearer tpuf_abc',
      error: 'postgresql://app:hunter2@db/x: refused',
      url: 'https://example.invalid/v2',
    })
    const out = lines.join('\n')
    expect(out).not.toContain('hunter2')
    expect(out).not.toContain('tpuf_abc')
    const j = JSON.parse(lines[0])
    expect(j.msg).toBe('connect to postgres://app:[redacted]@db:5432/x failed')
    expect(j.error).toBe('postgresql://app:[redacted]@db/x: refused')
    expect(j.password).toBe('[redacted]')
    expect(j.url).toBe('https://example.invalid/v2')
  })
})

describe('row logs', () => {
  let db: TestDatabase
  let dir: string
  beforeAll(async () => {
    db = await testDatabase('log')
    await ensureStateTables(db.sql)
    dir = mkdtempSync(join(tmpdir(), 'puffgres-log-'))
  })
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true })
    await db?.drop()
  })

  test('a dead-lettered row names its mapping and id, and not its column values', async () => {
    const file = join(dir, 'throws.ts')
    writeFileSync(file, `export default function (e) { throw new Error('no ' + e.id) }\n`)
    await db.sql`CREATE TABLE items (id int PRIMARY KEY, secret text)`
    const project = makeProject({
      databaseUrl: db.url,
      migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
    })
    const mapping = loadConfig(project.config).mappings[0]
    project.remove()
    const lines: string[] = []
    const log = createLogger({ json: true, level: 'debug', write: (l) => lines.push(l) })
    const runner = await createTransformRunner({ kind: 'module', path: file }, { mapping: 'items', log })
    const route = { mapping, runner, keyTypes: ['integer'] }
    const intent: Intent = {
      route,
      id: 42,
      key: rowKey(mapping, { id: 42 }, ['42']),
      kind: 'upsert',
      version: '0'.repeat(24),
      lsn: 1n,
      event: {
        type: 'insert',
        op: 'insert',
        id: 42,
        schema: 'public',
        table: 'items',
        new: { id: 42, secret: 's3cr3t-value' },
        lsn: '0/1',
        mapping: 'items',
      },
    }
    const summary = await writeIntents([intent], [], { sink: new DiscardSink(), sql: db.sql, log })
    await runner.close()
    expect(summary.deadLettered).toBe(1)
    const rowLines = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'row sent to the dead-letter queue')
    expect(rowLines).toHaveLength(1)
    expect(rowLines[0]).toMatchObject({ level: 'warn', mapping: 'items', id: '42' })
    expect(lines.join('\n')).not.toContain('s3cr3t-value')
  })
})
