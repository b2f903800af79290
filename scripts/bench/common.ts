// Helpers the benchmarks share: child processes with their CPU time and peak RSS, slot positions, pg_recvlogical,
// the local turbopuffer server as a child.
import { Buffer } from 'node:buffer'
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import process from 'node:process'
import type postgres from 'postgres'
import { formatLsn, parseLsn } from '../../src/postgres/lsn.ts'
import { freePort, pgBinDir } from '../../src/postgres/throwaway.ts'

export const root = new URL('../..', import.meta.url).pathname
export const bun = join(root, 'node_modules/.bin/bun')
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
export const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A child process with its stderr lines, exit, and peak RSS (VmHWM) sampled from /proc while it runs. */
export interface Child {
  proc: ChildProcess
  lines: string[]
  exited: Promise<number | null>
  peakMb(): number
  /** CPU seconds (user + system) used so far (the last sample once it exited) */
  cpuSeconds(): number
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat; undefined once it is gone. */
export function cpuOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields 14 and 15 of stat(5) (utime, stime), counted from the state (field 3); clock ticks of 1/100 s
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return undefined
  }
}

/** Follows a process's CPU time while it lives (a walsender vanishes at the end; its last sample stays). */
export function watchCpu(pid: number) {
  let last = cpuOf(pid) ?? 0
  const timer = setInterval(() => last = cpuOf(pid) ?? last, 25)
  return {
    stop: () => {
      last = cpuOf(pid) ?? last
      clearInterval(timer)
      return last
    },
  }
}

export function startChild(cmd: string, argv: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(cmd, argv, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  let buf = ''
  const onData = (d: Buffer) => {
    buf += d
    const parts = buf.split('\n')
    buf = parts.pop()!
    lines.push(...parts)
  }
  proc.stdout!.on('data', onData)
  proc.stderr!.on('data', onData)
  let peakKb = 0
  let cpu = 0
  const sample = () => {
    cpu = cpuOf(proc.pid!) ?? cpu
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))
      if (m) peakKb = Math.max(peakKb, Number(m[1]))
    } catch { /* exited */ }
  }
  const timer = setInterval(sample, 25)
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      clearInterval(timer)
      resolve(code)
    })
  )
  return {
    proc,
    lines,
    exited,
    peakMb: () => {
      sample()
      return peakKb / 1024
    },
    cpuSeconds: () => {
      sample()
      return cpu
    },
  }
}

export async function waitUntil(
  what: string,
  ok: () => boolean | Promise<boolean>,
  child?: Child,
  timeoutMs = 600_000,
) {
  const until = performance.now() + timeoutMs
  while (!(await ok())) {
    if (child && child.proc.exitCode !== null) {
      throw new Error(`waiting for ${what}: the process exited (${child.proc.exitCode}):\n${child.lines.join('\n')}`)
    }
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

export async function stopChild(child: Child): Promise<void> {
  if (child.proc.exitCode !== null) return
  child.proc.kill('SIGTERM')
  const code = await Promise.race([child.exited, sleep(15_000).then(() => 'timeout' as const)])
  if (code === 'timeout') {
    child.proc.kill('SIGKILL')
    await child.exited
  }
}

export async function confirmed(sql: postgres.Sql, slot: string): Promise<bigint> {
  const [r] = await sql<{ lsn: string | null }[]>`
    SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${slot}`
  return r?.lsn ? parseLsn(r.lsn) : 0n
}

export interface Result {
  label: string
  seconds: number
  peakMb?: number
  startupSeconds?: number
  /** CPU seconds of the consumer process, of the walsender that fed it, and of the local server */
  cpu?: number
  walsenderCpu?: number
  serverCpu?: number
}

/** Watches the CPU time of the walsender serving `slot`, from the moment it is active. */
export function watchWalsender(sql: postgres.Sql, slot: string) {
  let watch: ReturnType<typeof watchCpu> | undefined
  let stopped = false
  const found = (async () => {
    while (!stopped && !watch) {
      const [r] = await sql<{ pid: number | null }[]>`
        SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = ${slot}`
      if (r?.pid) watch = watchCpu(r.pid)
      else await sleep(5)
    }
  })()
  return {
    async stop() {
      stopped = true
      await found
      return watch?.stop()
    },
  }
}

export async function recvlogical(
  sql: postgres.Sql,
  url: string,
  slot: string,
  end: bigint,
  publication = 'puffgres_pub',
): Promise<Result> {
  const cmd = join(pgBinDir(), 'pg_recvlogical')
  const argv = [
    '-d',
    url,
    '--slot',
    slot,
    '--start',
    '-o',
    'proto_version=1',
    '-o',
    `publication_names=${publication}`,
    '-f',
    '/dev/null',
    '--endpos',
    formatLsn(end),
    '--no-loop',
  ]
  const started = performance.now()
  const child = isRoot ? startChild('runuser', ['-u', 'postgres', '--', cmd, ...argv]) : startChild(cmd, argv)
  const walsender = watchWalsender(sql, slot)
  const code = await child.exited
  const seconds = (performance.now() - started) / 1000
  if (code !== 0) throw new Error(`pg_recvlogical exited ${code}:\n${child.lines.join('\n')}`)
  return { label: `pg_recvlogical (${slot})`, seconds, walsenderCpu: await walsender.stop() }
}

/** `puffgres local` as a child; resolves once it answers. */
export async function localServer(extra: string[] = []): Promise<{ url: string; child: Child }> {
  const port = await freePort()
  const child = startChild(bun, ['src/cli.ts', 'local', '--port', String(port), ...extra])
  const url = `http://127.0.0.1:${port}`
  await waitUntil('puffgres local', async () => {
    try {
      return (await fetch(`${url}/v1/namespaces`, { headers: { authorization: 'Bearer x' } })).ok
    } catch {
      return false
    }
  }, child)
  return { url, child }
}

export async function countDocs(url: string, ns: string): Promise<number> {
  const r = await fetch(`${url}/v2/namespaces/${ns}/query`, {
    method: 'POST',
    headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
    body: JSON.stringify({ aggregate_by: { n: ['Count'] } }),
  })
  if (!r.ok) throw new Error(`counting documents of ${ns}: ${r.status} ${await r.text()}`)
  return (await r.json()).aggregations.n
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

// ---- the mixed workload of cdc.ts (big and small inserts and updates of ~200-byte rows) ----

export const ROW_VALUES = (g: string) =>
  `${g}, 'item number ' || ${g}, repeat(md5(${g}::text), 4), ${g} % 97, (${g} % 10000) / 100.0, ` +
  `'2024-01-01'::timestamptz + ${g} * interval '1 second'`

/** The parts of the workload, in changes; they add up to `rows`. */
export function plan(rows: number) {
  const bigInsert = Math.floor(rows * 0.3)
  const batchInsert = Math.floor(rows * 0.2)
  const singleInsert = Math.floor(rows * 0.15)
  const bigUpdate = Math.floor(rows * 0.2)
  const singleUpdate = rows - bigInsert - batchInsert - singleInsert - bigUpdate
  return { bigInsert, batchInsert, singleInsert, bigUpdate, singleUpdate }
}

/** Commits the mixed workload into `table` (ids from 1; the table must be empty). */
export async function workload(sql: postgres.Sql, rows: number, table = 'items') {
  const p = plan(rows)
  const ids = p.bigInsert + p.batchInsert + p.singleInsert
  const chunk = 50_000
  let next = 1
  for (let left = p.bigInsert; left > 0; left -= chunk) {
    const n = Math.min(chunk, left)
    await sql.unsafe(`INSERT INTO ${table} SELECT ${ROW_VALUES('g')} FROM generate_series(${next}, ${next + n - 1}) g`)
    next += n
  }
  if (p.batchInsert) {
    await sql.unsafe(`DO $$ BEGIN
      FOR s IN ${next}..${next + p.batchInsert - 1} BY 100 LOOP
        INSERT INTO ${table} SELECT ${ROW_VALUES('g')} FROM generate_series(s, least(s + 99, ${
      next + p.batchInsert - 1
    })) g;
        COMMIT;
      END LOOP; END $$`)
    next += p.batchInsert
  }
  if (p.singleInsert) {
    await sql.unsafe(`DO $$ BEGIN
      FOR i IN ${next}..${next + p.singleInsert - 1} LOOP
        INSERT INTO ${table} VALUES (${ROW_VALUES('i')});
        COMMIT;
      END LOOP; END $$`)
    next += p.singleInsert
  }
  for (let from = 1, left = p.bigUpdate; left > 0; left -= chunk) {
    const n = Math.min(chunk, left)
    await sql.unsafe(
      `UPDATE ${table} SET qty = qty + 1, updated_at = clock_timestamp() WHERE id BETWEEN ${from} AND ${from + n - 1}`,
    )
    from += n
  }
  if (p.singleUpdate) {
    // spread over the table: 7919 is prime, so consecutive updates hit scattered rows
    await sql.unsafe(`DO $$ BEGIN
      FOR i IN 1..${p.singleUpdate} LOOP
        UPDATE ${table} SET qty = qty + 1, updated_at = clock_timestamp() WHERE id = 1 + (i::bigint * 7919) % ${ids};
        COMMIT;
      END LOOP; END $$`)
  }
  return {
    ...p,
    ids,
    transactions: Math.ceil(p.bigInsert / chunk) + Math.ceil(p.batchInsert / 100) +
      p.singleInsert + Math.ceil(p.bigUpdate / chunk) + p.singleUpdate,
  }
}

/**
 * Single-row commits at `rate` per second for `seconds`, in ticks of 10 ms, ids from `base`; each id is stamped in
 * `committed` when its commit returns. Resolves with the rate achieved and the number of rows.
 */
export async function commitAtRate(
  sql: postgres.Sql,
  rate: number,
  seconds: number,
  base: number,
  committed: Map<number, number>,
): Promise<{ total: number; achieved: number }> {
  const perTick = rate / 100
  const total = rate * seconds
  const started = performance.now()
  let sent = 0
  const inflight = new Set<Promise<unknown>>()
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 10) * perTick))
    for (; sent < due; sent++) {
      const id = base + sent
      const p = sql.unsafe(`INSERT INTO items VALUES (${ROW_VALUES(String(id))})`).then(() => {
        committed.set(id, performance.now())
      })
      inflight.add(p)
      p.finally(() => inflight.delete(p))
    }
    await sleep(10)
  }
  await Promise.all(inflight)
  return { total, achieved: total / ((performance.now() - started) / 1000) }
}

/**
 * The end LSN of one more (marker) commit after a workload, an update of row 1 of `table`: a consumer has consumed
 * everything once its slot's confirmed flush LSN reaches it. Read from the Commit message of a slot made just before.
 */
export async function markEnd(sql: postgres.Sql, table: string, publication = 'puffgres_pub'): Promise<bigint> {
  await sql`SELECT pg_create_logical_replication_slot('bench_end', 'pgoutput')`
  await sql.unsafe(`UPDATE ${table} SET qty = qty + 1 WHERE id = 1`)
  let commit: Buffer | undefined
  for (let tries = 0; !commit && tries < 200; tries++) {
    const rows = await sql<{ data: Uint8Array }[]>`
      SELECT data FROM pg_logical_slot_peek_binary_changes('bench_end', NULL, NULL,
        'proto_version', '1', 'publication_names', ${publication})`
    commit = rows.map((r) => Buffer.from(r.data)).find((d) => d[0] === 'C'.charCodeAt(0))
    if (!commit) await sleep(25)
  }
  await sql`SELECT pg_drop_replication_slot('bench_end')`
  if (!commit) throw new Error('the marker transaction did not show up in its slot')
  return commit.readBigUInt64BE(10)
}
