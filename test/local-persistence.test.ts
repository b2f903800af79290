// The local server with a data dir: acknowledged writes survive a restart, compaction and a torn log line.
import { afterEach, describe, expect, test } from 'bun:test'
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'

const dirs: string[] = []
const servers: LocalServer[] = []

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'puffgres-local-'))
  dirs.push(d)
  return d
}

async function start(dir: string, extra: Parameters<typeof startLocalServer>[0] = {}) {
  const server = await startLocalServer({ dataDir: dir, ...extra })
  servers.push(server)
  return { server, tpuf: new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0 }) }
}

afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop()
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

describe('persistence', () => {
  test('namespaces, documents, schema and metric survive a restart; deletes stay deleted', async () => {
    const dir = dataDir()
    const a = await start(dir)
    await a.tpuf.namespace('docs').write({
      distance_metric: 'cosine_distance',
      schema: { at: 'datetime' },
      upsert_rows: [
        { id: 1, vector: [1, 0], title: 'one', at: '2024-05-01' },
        { id: 2, vector: [0, 1], title: 'two' },
        { id: 3, vector: [1, 1], title: 'three' },
      ],
    })
    await a.tpuf.namespace('docs').write({ deletes: [2], patch_rows: [{ id: 3, title: 'THREE' }] })
    await a.tpuf.namespace('other').write({ upsert_rows: [{ id: 'x' }] })
    await a.tpuf.namespace('gone').write({ upsert_rows: [{ id: 'y' }] })
    await a.tpuf.namespace('gone').deleteAll()
    const before = a.server.documents('docs')
    await a.server.stop()

    const b = await start(dir)
    expect(b.server.namespaces()).toEqual(['docs', 'other'])
    expect(b.server.documents('docs')).toEqual(before)
    expect(before.map((d) => d.id)).toEqual([1, 3])
    const schema = await b.tpuf.namespace('docs').schema()
    expect(schema.at.type).toBe('datetime')
    expect(schema.vector).toEqual({ type: '[2]f32', ann: { distance_metric: 'cosine_distance' } })
    // the restarted namespace keeps accepting writes with the same rules
    const e = await b.tpuf.namespace('docs').write({ upsert_rows: [{ id: 4, vector: [1, 2, 3] }] }).catch((e) => e)
    expect(e.status).toBe(400)
    await b.tpuf.namespace('docs').write({ upsert_rows: [{ id: 4, vector: [2, 0] }] })
    await b.server.stop()

    const c = await start(dir)
    expect(c.server.documents('docs').map((d) => d.id)).toEqual([1, 3, 4])
  })

  test('compaction folds the log into a snapshot without losing anything', async () => {
    const dir = dataDir()
    const a = await start(dir, { compactAfterBytes: 2000 })
    const ns = a.tpuf.namespace('big')
    for (let i = 0; i < 40; i++) {
      await ns.write({ upsert_rows: [{ id: i % 15, round: i, text: 'x'.repeat(50) }] })
    }
    expect(existsSync(join(dir, 'snapshot.jsonl'))).toBe(true)
    // the log was truncated at the last compaction, so it holds fewer than all 40 writes
    const walLines = readFileSync(join(dir, 'log.jsonl'), 'utf8').split('\n').filter(Boolean).length
    expect(walLines).toBeLessThan(40)
    const before = a.server.documents('big')
    expect(before).toHaveLength(15)
    await a.server.stop()
    const b = await start(dir)
    expect(b.server.documents('big')).toEqual(before)
  })

  test('a torn last log line (a write never acknowledged) is dropped; a corrupt middle line refuses to start', async () => {
    const dir = dataDir()
    const a = await start(dir)
    await a.tpuf.namespace('t').write({ upsert_rows: [{ id: 1, v: 'a' }] })
    await a.tpuf.namespace('t').write({ upsert_rows: [{ id: 2, v: 'b' }] })
    await a.server.stop()
    const wal = join(dir, 'log.jsonl')
    const goodSize = statSync(wal).size
    appendFileSync(wal, '{"seq":3,"ns":"t","meta":{"crea')
    const b = await start(dir)
    expect(b.server.documents('t').map((d) => d.id)).toEqual([1, 2])
    expect(statSync(wal).size).toBe(goodSize)
    await b.tpuf.namespace('t').write({ upsert_rows: [{ id: 3, v: 'c' }] })
    await b.server.stop()
    const c = await start(dir)
    expect(c.server.documents('t').map((d) => d.id)).toEqual([1, 2, 3])
    await c.server.stop()

    appendFileSync(wal, 'garbage\n{"seq":99}\n')
    await expect(startLocalServer({ dataDir: dir })).rejects.toThrow('log.jsonl line 4')
  })

  test('without a data dir nothing is written and a restart starts empty', async () => {
    const first = await startLocalServer()
    servers.push(first)
    const c = new Turbopuffer({ apiKey: 'k', baseURL: first.url, maxRetries: 0 })
    await c.namespace('m').write({ upsert_rows: [{ id: 1 }] })
    expect(first.namespaces()).toEqual(['m'])
    const second = await startLocalServer()
    servers.push(second)
    expect(second.namespaces()).toEqual([])
  })

  test('a deleted namespace stays deleted across a restart and leaves the files at the next compaction', async () => {
    const dir = dataDir()
    const a = await start(dir, { compactAfterBytes: 4000 })
    await a.tpuf.namespace('tmp').write({ upsert_rows: [{ id: 1, t: 'x'.repeat(3000) }] })
    await a.tpuf.namespace('keep').write({ upsert_rows: [{ id: 1, t: 'y'.repeat(1500) }] })
    const snapshotHas = (text: string) => readFileSync(join(dir, 'snapshot.jsonl'), 'utf8').includes(text)
    expect(snapshotHas('x'.repeat(3000))).toBe(true)
    await a.tpuf.namespace('tmp').deleteAll()
    await a.server.stop()
    const b = await start(dir, { compactAfterBytes: 4000 })
    expect(b.server.namespaces()).toEqual(['keep'])
    // the deleted namespace's share of the snapshot counts towards the next compaction
    await b.tpuf.namespace('keep').write({ upsert_rows: [{ id: 2, t: 'z'.repeat(1200) }] })
    expect(snapshotHas('x'.repeat(3000))).toBe(false)
    expect(snapshotHas('z'.repeat(1200))).toBe(true)
    expect(readdirSync(dir).sort()).toEqual(['log.jsonl', 'snapshot.jsonl'])
  })

  test('log entries already in the snapshot are skipped (a crash between snapshot and truncation)', async () => {
    const dir = dataDir()
    const a = await start(dir, { compactAfterBytes: 1000 })
    const ns = a.tpuf.namespace('s')
    await ns.write({ upsert_rows: [{ id: 1, v: 'old' }] })
    const stale = readFileSync(join(dir, 'log.jsonl'), 'utf8')
    // a big write compacts: the snapshot holds v = new, the log is emptied
    await ns.write({ upsert_rows: [{ id: 1, v: 'new', pad: 'x'.repeat(2000) }] })
    expect(readFileSync(join(dir, 'log.jsonl'), 'utf8')).toBe('')
    await a.server.stop()
    // the truncation "did not happen": the old entry is still in the log
    appendFileSync(join(dir, 'log.jsonl'), stale)
    const b = await start(dir)
    expect(b.server.documents('s')).toEqual([{ id: 1, v: 'new', pad: 'x'.repeat(2000) }])
  })

  test('a namespace deleted and created again keeps only what came after', async () => {
    const dir = dataDir()
    const a = await start(dir)
    await a.tpuf.namespace('re').write({ upsert_rows: [{ id: 1, gen: 1 }, { id: 2, gen: 1 }] })
    await a.tpuf.namespace('re').deleteAll()
    await a.tpuf.namespace('re').write({ upsert_rows: [{ id: 3, gen: 2 }] })
    await a.server.stop()
    const b = await start(dir)
    expect(b.server.documents('re')).toEqual([{ id: 3, gen: 2 }])
  })

  test('a data dir of the older layout (a folder per namespace) is read and folded into the one log', async () => {
    const dir = dataDir()
    const legacy = join(dir, 'namespaces', 'old')
    mkdirSync(legacy, { recursive: true })
    const meta = { createdAt: '2024-01-01T00:00:00.000Z', updatedAt: '2024-01-01T00:00:00.000Z', schema: {} }
    writeFileSync(join(legacy, 'snapshot.json'), JSON.stringify({ seq: 1, meta, docs: [{ id: 1, v: 'a' }] }))
    writeFileSync(
      join(legacy, 'wal.jsonl'),
      [
        { seq: 1, meta, put: [{ id: 1, v: 'stale' }], del: [] },
        { seq: 2, meta, put: [{ id: 2, v: 'b' }], del: [] },
        { seq: 3, meta, put: [], del: [1] },
      ].map((e) => JSON.stringify(e) + '\n').join(''),
    )
    const a = await start(dir)
    expect(a.server.documents('old')).toEqual([{ id: 2, v: 'b' }])
    expect(existsSync(join(dir, 'namespaces'))).toBe(false)
    await a.tpuf.namespace('old').write({ upsert_rows: [{ id: 3, v: 'c' }] })
    await a.server.stop()
    const b = await start(dir)
    expect(b.server.documents('old')).toEqual([{ id: 2, v: 'b' }, { id: 3, v: 'c' }])
  })
})
