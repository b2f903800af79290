// `puffgres local` with thousands of namespaces (issue 24): the same tenants' writes and queries into one namespace
// (a `tenant` attribute, queries filter on it), then into a namespace per tenant (--namespaces of them), in memory
// and with a data dir; listing every namespace by prefix; a restart that loads them all. Prints each per-tenant
// figure as a ratio of the one-namespace figure of the same run.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { startLocalServer } from '../../src/local/server.ts'
import { fmt, wholeArg } from './common.ts'

const { values } = parseArgs({
  options: {
    namespaces: { type: 'string', default: '2000' },
    writes: { type: 'string', default: '4000' },
    rows: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '16' },
  },
})
const NAMESPACES = wholeArg(values, 'namespaces', 1)
const WRITES = wholeArg(values, 'writes', 1)
const ROWS = wholeArg(values, 'rows', 1)
const CONCURRENCY = wholeArg(values, 'concurrency', 1)

/** Runs `count` tasks, `CONCURRENCY` at a time; returns tasks per second. */
async function rate(count: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0
  const start = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) await task(next++)
  }))
  return count / ((performance.now() - start) / 1000)
}

async function measure(dataDir: string | undefined, tenants: number, perTenant: boolean) {
  const server = await startLocalServer({ dataDir })
  const tpuf = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0 })
  const tenant = (i: number) => `bench-${String(i % tenants).padStart(5, '0')}`
  const name = (i: number) => perTenant ? tenant(i) : 'bench-all'
  try {
    const writes = await rate(WRITES, (i) =>
      tpuf.namespace(name(i)).write({
        upsert_rows: Array.from({ length: ROWS }, (_, r) => ({ id: i * ROWS + r, tenant: tenant(i), n: r })),
      }))
    const queries = await rate(WRITES, (i) =>
      tpuf.namespace(name(i)).query({
        rank_by: ['id', 'asc'],
        top_k: 10,
        filters: perTenant ? ['n', 'Lt', 5] : ['And', [['tenant', 'Eq', tenant(i)], ['n', 'Lt', 5]]],
      }))
    let listed = 0
    const listStart = performance.now()
    for await (const _ of tpuf.namespaces({ prefix: 'bench-', page_size: 100 })) listed++
    const listMs = performance.now() - listStart
    let restartMs: number | undefined
    if (dataDir) {
      await server.stop()
      const t = performance.now()
      const again = await startLocalServer({ dataDir })
      restartMs = performance.now() - t
      if (again.namespaces().length !== (perTenant ? tenants : 1)) throw new Error('a namespace was lost')
      await again.stop()
    }
    return { writes, queries, listed, listMs, restartMs }
  } finally {
    await server.stop()
  }
}

const spread = Math.min(NAMESPACES, WRITES)
console.log(
  `local server: ${fmt(WRITES)} writes of ${ROWS} rows for ${fmt(spread)} tenants, then ${fmt(WRITES)} queries, ` +
    `${CONCURRENCY} at a time; one namespace (a tenant attribute) vs a namespace per tenant`,
)
console.log('| storage | namespaces | writes/s | ratio | queries/s | ratio | list all (ms) | restart (ms) |')
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
for (const disk of [false, true]) {
  const dirs: string[] = []
  const dir = () => {
    const d = mkdtempSync(join(tmpdir(), 'puffgres-bench-ns-'))
    dirs.push(d)
    return d
  }
  try {
    const one = await measure(disk ? dir() : undefined, spread, false)
    const many = await measure(disk ? dir() : undefined, spread, true)
    if (many.listed !== spread) throw new Error(`listed ${many.listed} namespaces, expected ${spread}`)
    for (const [n, r] of [[1, one], [spread, many]] as const) {
      console.log(
        `| ${disk ? 'data dir' : 'memory'} | ${fmt(n)} | ${fmt(r.writes)} | ${(r.writes / one.writes).toFixed(2)} | ` +
          `${fmt(r.queries)} | ${(r.queries / one.queries).toFixed(2)} | ${r.listMs.toFixed(0)} | ` +
          `${r.restartMs === undefined ? '-' : r.restartMs.toFixed(0)} |`,
      )
    }
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
}
