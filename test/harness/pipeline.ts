// One test file's (or describe block's) pipeline, set up in beforeAll and taken down in afterAll: a fresh database
// with its tables, the local turbopuffer server, a project with its migrations, `migrate`, and, when asked, `run`
// streaming in process. The returned accessors are usable inside hooks and tests (not while the file loads).
import { afterAll, beforeAll, expect } from 'bun:test'
import { type LocalServer, startLocalServer } from '../../src/local/server.ts'
import { createClient } from '../../src/turbopuffer/client.ts'
import { runCli } from './cli.ts'
import { type TestDatabase, testDatabase } from './pg.ts'
import { makeProject, type Project } from './project.ts'
import { docsById, type RunningStream, startStream, type StreamOptions, waitForSlotActive } from './stream.ts'

export interface PipelineSpec {
  /** the database's name prefix */
  name: string
  encoding?: 'SQL_ASCII'
  /** SQL run in the new database before the project is written (several statements allowed) */
  sql?: string
  /** runs once the database and the server exist, before `sql` and the project (e.g. a proxy, another server) */
  prepare?: (p: Pipeline) => Promise<void> | void
  /** where the project writes, when not to the local server (read after `prepare`) */
  turbopufferUrl?: () => string
  /** TOML appended to puffgres.toml; a function is read after `prepare` */
  extra?: string | (() => string)
  /** file name (e.g. 001_items.toml) → contents */
  migrations?: Record<string, string>
  /** path under puffgres/ (e.g. transforms/x.ts) → contents */
  files?: Record<string, string>
  /** run `migrate` and expect exit 0 (default true); its result is `migrated` */
  migrate?: boolean
  /** `ALTER DATABASE … SET wal_sender_timeout` before the stream, e.g. '3s' */
  walSenderTimeout?: string
  /** start `run` once migrated and wait until it streams (default: no stream; tests call startStream) */
  stream?: boolean | StreamOptions
}

export interface Pipeline {
  readonly db: TestDatabase
  readonly server: LocalServer
  readonly project: Project
  /** what `migrate` printed and returned */
  readonly migrated: { code: number; out: string; err: string }
  /** the stream started last (throws when none was started) */
  readonly stream: RunningStream
  /** a stream was started and not stopped */
  readonly streaming: boolean
  /** starts `run` in process on the project and waits until its slot is active; stopped at teardown if still running */
  startStream(opts?: StreamOptions): Promise<RunningStream>
  /** `puffgres -c <the project's config> ...args`, in process */
  cli(...args: string[]): Promise<{ code: number; out: string; err: string }>
  /** `status --json`, parsed (and its exit code checked) */
  status(): Promise<any>
  /** the documents of a namespace on the local server, by id */
  docs(ns: string): Map<unknown, Record<string, unknown>>
  /** a namespace of the local server through the turbopuffer SDK (to write or corrupt documents behind puffgres) */
  namespace(name: string): ReturnType<ReturnType<typeof createClient>['namespace']>
  /** the dead letters (of one mapping), oldest first */
  deadLetters(mapping?: string): Promise<{ mapping: string; doc_id: string | null; error: string }[]>
  /** runs `fn` at teardown, before the stream, server, project and database go (the last deferred first) */
  defer(fn: () => unknown): void
}

export function usePipeline(spec: PipelineSpec): Pipeline {
  let db: TestDatabase | undefined
  let server: LocalServer | undefined
  let project: Project | undefined
  let migrated: Pipeline['migrated'] | undefined
  let current: RunningStream | undefined
  const running = new Set<RunningStream>()
  const deferred: (() => unknown)[] = []
  const ready = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`the pipeline's ${what} is not there yet (read it in a hook or a test)`)
    return v
  }

  const p: Pipeline = {
    get db() {
      return ready(db, 'database')
    },
    get server() {
      return ready(server, 'server')
    },
    get project() {
      return ready(project, 'project')
    },
    get migrated() {
      return ready(migrated, 'migrate result')
    },
    get stream() {
      return ready(current, 'stream')
    },
    get streaming() {
      return current !== undefined && running.has(current)
    },
    async startStream(opts = {}) {
      const s = startStream(p.project.config, opts)
      const stop = s.stop
      s.stop = () => (running.delete(s), stop())
      running.add(s)
      current = s
      await waitForSlotActive(p.db.sql, opts.slot)
      return s
    },
    cli: (...args) => runCli(['-c', p.project.config, ...args]),
    async status() {
      const r = await p.cli('status', '--json')
      expect(r.code).toBe(0)
      return JSON.parse(r.out)
    },
    docs: (ns) => docsById(p.server.documents(ns)),
    namespace: (name) => createClient({ api_key: 'test-key', base_url: p.server.url }).namespace(name),
    async deadLetters(mapping) {
      type Row = { mapping: string; doc_id: string | null; error: string }
      const sql = p.db.sql
      return mapping === undefined
        ? await sql<Row[]>`SELECT mapping, doc_id, error FROM __puffgres_dlq ORDER BY id`
        : await sql<Row[]>`SELECT mapping, doc_id, error FROM __puffgres_dlq WHERE mapping = ${mapping} ORDER BY id`
    },
    defer: (fn) => void deferred.push(fn),
  }

  beforeAll(async () => {
    db = await testDatabase(spec.name, { encoding: spec.encoding })
    server = await startLocalServer()
    await spec.prepare?.(p)
    if (spec.sql) await db.sql.unsafe(spec.sql)
    project = makeProject({
      databaseUrl: db.url,
      turbopufferUrl: spec.turbopufferUrl?.() ?? server.url,
      extra: typeof spec.extra === 'function' ? spec.extra() : spec.extra,
      migrations: spec.migrations,
      files: spec.files,
    })
    if (spec.migrate !== false) {
      migrated = await p.cli('migrate')
      expect(migrated.code).toBe(0)
    }
    if (spec.walSenderTimeout) {
      await db.sql.unsafe(`ALTER DATABASE "${db.name}" SET wal_sender_timeout = '${spec.walSenderTimeout}'`)
    }
    if (spec.stream) await p.startStream(spec.stream === true ? {} : spec.stream)
  }, 120_000)

  afterAll(async () => {
    // every step runs; the first failure is reported once all of them ran
    let failure: unknown
    const step = async (fn: () => unknown) => {
      try {
        await fn()
      } catch (e) {
        failure ??= e
      }
    }
    for (const fn of deferred.reverse()) await step(fn)
    for (const s of running) await step(() => s.stop())
    await step(() => server?.stop())
    await step(() => project?.remove())
    await step(() => db?.drop())
    if (failure !== undefined) throw failure
  })

  return p
}
