// Helpers the benchmarks share: options, the bench database and its projects, child processes with their CPU time
// and peak RSS, slot positions, pg_recvlogical, `puffgres run` draining a slot, the local turbopuffer server as a
// child, the mixed workload, and commit→visible latency through a stamping proxy.
import { Buffer } from 'node:buffer'
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import process from 'node:process'
import { gunzipSync } from 'node:zlib'
import postgres from 'postgres'
import { formatLsn, parseLsn } from '../../src/postgres/lsn.ts'
import { type Cluster, freePort, pgBinDir, startCluster } from '../../src/postgres/throwaway.ts'
import { serveHttp } from '../../src/runtime.ts'
import { makeProject, migration, type Project } from '../../test/harness/project.ts'

export const root = new URL('../..', import.meta.url).pathname
export const bun = join(root, 'node_modules/.bin/bun')
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
export const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The whole-number option `--name` of parseArgs' `values`, at least `min`. */
export function wholeArg(values: Record<string, unknown>, name: string, min: number): number {
  const n = Number(values[name])
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`--${name}: expected a whole number >= ${min}, got "${values[name]}"`)
  }
  return n
}

/** Creates the database `bench` in a throwaway cluster; returns its URL. */
export async function createBenchDatabase(cluster: Cluster): Promise<string> {
  const admin = postgres(cluster.url(), { max: 1, onnotice: () => {} })
  await admin.unsafe('CREATE DATABASE bench')
  await admin.end()
  return cluster.url('bench')
}

/** A table of the columns ROW_VALUES fills. */
export async function createItemsTable(sql: postgres.Sql, table: string) {
  await sql.unsafe(`CREATE TABLE ${table} (
    id bigint PRIMARY KEY, title text NOT NULL, body text, qty int, price numeric(10,2), updated_at timestamptz)`)
}

/**
 * Projects with one mapping per table (named after it, in 001_<table>.toml, 002_…) on `databaseUrl`: `make` writes
 * one (into the discard sink without a turbopuffer URL), `removeAll` deletes every one made.
 */
export function benchProjects(databaseUrl: string, tables: string[]) {
  const made: Project[] = []
  return {
    make(turbopufferUrl?: string): Project {
      const p = makeProject({
        databaseUrl,
        turbopufferUrl,
        migrations: Object.fromEntries(
          tables.map((t, k) => [`00${k + 1}_${t}.toml`, migration({ name: t, table: t })]),
        ),
      })
      made.push(p)
      return p
    },
    removeAll() {
      for (const p of made) p.remove()
    },
  }
}

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
  // BENCH_CPU_PROF=<dir>: every Bun child writes a CPU profile (.cpuprofile and Markdown) there when it exits
  const profDir = process.env.BENCH_CPU_PROF
  if (profDir && cmd === bun) argv = ['--cpu-prof', '--cpu-prof-md', `--cpu-prof-dir=${profDir}`, ...argv]
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

export interface Bench {
  /** of the database `bench` */
  url: string
  sql: postgres.Sql
  /** `puffgres local`, a child process */
  server: { url: string; child: Child }
  /** `make()` writes a project into the discard sink, `make(url)` one into the turbopuffer at `url` */
  projects: ReturnType<typeof benchProjects>
  /** mapping every table, into the discard sink */
  discard: Project
  /** mapping every table, into the local server */
  remote: Project
}

/**
 * Runs `body` on a throwaway cluster (commits wait for the WAL flush as in production, else the walsender sees a
 * commit only after wal_writer_delay; fsync stays off: the benchmarks measure CPU, not this machine's disk) with
 * the database `bench` holding `tables` (the columns ROW_VALUES fills), `puffgres local` (with `serverFlags`) as a
 * child, and two projects mapping every table, migrated. Stops and removes all of it afterwards.
 */
export async function withBench<T>(
  tables: string[],
  serverFlags: string[],
  body: (bench: Bench) => Promise<T>,
): Promise<T> {
  const cluster = await startCluster({ synchronous_commit: 'on' })
  let server: Bench['server'] | undefined
  let projects: Bench['projects'] | undefined
  try {
    const url = await createBenchDatabase(cluster)
    const sql = postgres(url, { max: 4, onnotice: () => {} })
    for (const t of tables) await createItemsTable(sql, t)
    server = await localServer(serverFlags)
    projects = benchProjects(url, tables)
    const discard = projects.make()
    const remote = projects.make(server.url)
    await migrateProject(remote)
    return await body({ url, sql, server, projects, discard, remote })
  } finally {
    if (server) await stopChild(server.child)
    projects?.removeAll()
    cluster.stop()
  }
}

/** `puffgres migrate` of a project, as a child. */
export async function migrateProject(project: Project): Promise<void> {
  const m = startChild(bun, ['src/cli.ts', '-c', project.config, 'migrate'])
  if ((await m.exited) !== 0) throw new Error(`migrate failed:\n${m.lines.join('\n')}`)
}

/** `puffgres run` as a child (log level info) on `slot`, which exists already; resolves once it streams. */
export async function startRun(label: string, project: Project, slot: string, extra: string[] = []): Promise<Child> {
  const child = startChild(
    bun,
    ['src/cli.ts', '-c', project.config, 'run', '--slot', slot, '--create-slot', 'false', ...extra],
    { PUFFGRES_LOG: 'info' },
  )
  try {
    await waitUntil(`${label}: streaming`, () => child.lines.some((l) => l.includes('"streaming"')), child)
  } catch (e) {
    await stopChild(child)
    throw e
  }
  return child
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

export interface Drain {
  label: string
  project: Project
  /** a slot that exists already */
  slot: string
  /** the end LSN of the last commit to consume */
  end: bigint
  /** more flags of `puffgres run` */
  extra?: string[]
  /** the local server it writes to, whose CPU time is counted too */
  server?: Child
}

/**
 * `puffgres run` as a child until `slot` is confirmed at `end`; timed from its "streaming" log line. CPU seconds of
 * the child, of its walsender and (given its child) of the local server it writes to.
 */
export async function drainSlot(
  sql: postgres.Sql,
  { label, project, slot, end, extra, server }: Drain,
): Promise<Result> {
  const spawned = performance.now()
  const child = await startRun(label, project, slot, extra)
  try {
    const started = performance.now()
    const cpu0 = child.cpuSeconds()
    const serverCpu0 = server?.cpuSeconds() ?? 0
    const walsender = watchWalsender(sql, slot)
    await waitUntil(
      `${label}: slot ${slot} confirmed at ${formatLsn(end)}`,
      async () => (await confirmed(sql, slot)) >= end,
      child,
    )
    const seconds = (performance.now() - started) / 1000
    return {
      label,
      seconds,
      peakMb: child.peakMb(),
      startupSeconds: (started - spawned) / 1000,
      cpu: child.cpuSeconds() - cpu0,
      walsenderCpu: await walsender.stop(),
      serverCpu: server ? server.cpuSeconds() - serverCpu0 : undefined,
    }
  } finally {
    await stopChild(child)
  }
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

/** A proxy in front of `upstream` that stamps when each upserted id's write was acknowledged, and how long each write took. */
export async function arrivalProxy(upstream: string) {
  const arrived = new Map<number, number>()
  const writeMs: number[] = []
  const server = await serveHttp({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req) => {
      const url = new URL(req.url)
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : new Uint8Array(await req.arrayBuffer())
      const headers = new Headers(req.headers)
      headers.delete('host')
      headers.delete('content-length')
      const sent = performance.now()
      const res = await fetch(upstream + url.pathname + url.search, { method: req.method, headers, body })
      const out = await res.arrayBuffer()
      const now = performance.now()
      if (res.ok && body && req.method === 'POST' && /^\/v2\/namespaces\/[^/]+$/.test(url.pathname)) {
        writeMs.push(now - sent)
        const raw = req.headers.get('content-encoding') === 'gzip' ? gunzipSync(body) : body
        const w = JSON.parse(new TextDecoder().decode(raw))
        const ids: unknown[] = [
          ...(w.upsert_rows ?? []).map((r: { id: unknown }) => r.id),
          ...(w.upsert_columns?.id ?? []),
        ]
        for (const id of ids) if (typeof id === 'number' && !arrived.has(id)) arrived.set(id, now)
      }
      const h = new Headers(res.headers)
      h.delete('content-encoding')
      h.delete('content-length')
      return new Response(out, { status: res.status, headers: h })
    },
  })
  return { url: `http://127.0.0.1:${server.port}`, arrived, writeMs, stop: () => server.stop() }
}

/**
 * Commit→visible: `puffgres run` (with `extra` flags; its project written by `project` for the proxy's URL) streams
 * from a new slot `bench_latency` through an arrivalProxy in front of `serverUrl`, while single-row commits go in at
 * `rate` per second for `seconds` (ids from `base`). Each row's latency runs from its commit's return to its write's
 * acknowledgement; `timeoutMs` bounds the wait for the last rows.
 */
export async function commitToVisible(
  sql: postgres.Sql,
  opts: {
    project: (turbopufferUrl: string) => Project
    serverUrl: string
    rate: number
    seconds: number
    base: number
    extra?: string[]
    timeoutMs: number
  },
) {
  const proxy = await arrivalProxy(opts.serverUrl)
  const project = opts.project(proxy.url)
  await sql`SELECT pg_create_logical_replication_slot('bench_latency', 'pgoutput')`
  let child: Child | undefined
  const committed = new Map<number, number>()
  try {
    child = await startRun('latency run', project, 'bench_latency', opts.extra)
    const { total, achieved } = await commitAtRate(sql, opts.rate, opts.seconds, opts.base, committed)
    await waitUntil('every latency row to arrive', () => proxy.arrived.size >= total, child, opts.timeoutMs)
    const lat = [...committed].map(([id, t]) => proxy.arrived.get(id)! - t).sort((a, b) => a - b)
    const writes = [...proxy.writeMs].sort((a, b) => a - b)
    return {
      rows: total,
      rate: achieved,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      max: lat[lat.length - 1],
      writeP99: percentile(writes, 99),
      writes: writes.length,
      peakMb: child.peakMb(),
    }
  } finally {
    if (child) await stopChild(child)
    await sql`SELECT pg_drop_replication_slot('bench_latency')`.catch(() => {})
    await proxy.stop()
  }
}

/** The local server's counters (`puffgres local`'s /_admin/stats: requests, writes, statuses, rows upserted). */
export async function serverStats(url: string): Promise<Record<string, any>> {
  return await (await fetch(`${url}/_admin/stats`)).json()
}

/**
 * A benchmark's results as a Markdown table: `row` prints each line as it is measured, `summary` all of them again
 * at the end (for README).
 */
export function resultTable() {
  const rows: string[] = []
  const ok = (b: boolean) => (b ? 'yes' : '**no**')
  return {
    row(measure: string, result: string, target: string, met: boolean | undefined) {
      const line = `| ${measure} | ${result} | ${target} | ${met === undefined ? '' : ok(met)} |`
      rows.push(line)
      console.log(line)
    },
    summary() {
      console.log(`\nsummary (for README):\n| measure | result | target | met |\n| --- | --- | --- | --- |`)
      for (const l of rows) console.log(l)
    },
  }
}
