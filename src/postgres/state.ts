// The `__puffgres_*` state tables. All durable state lives in the source database (docs/ARCHITECTURE.md, "State").
import type postgres from 'postgres'

export const STATE_TABLES = [
  '__puffgres_migrations',
  '__puffgres_checkpoints',
  '__puffgres_dlq',
  '__puffgres_backfill',
  '__puffgres_backfill_pages',
] as const

/** The prefix of the transactional logical message `migrate` commits with its records and publication change. */
export const MIGRATE_MESSAGE_PREFIX = 'puffgres.migrate'

/**
 * An older version kept live during a re-index (`puffgres reindex`): `run` writes it along with the newest version
 * until it is retired. Added by `reindex` to a database migrated before it existed; read through to_jsonb so that
 * a database without the column reads as "none kept".
 */
const KEPT_LIVE_DDL =
  'ALTER TABLE __puffgres_migrations ADD COLUMN IF NOT EXISTS kept_live boolean NOT NULL DEFAULT false;'

const DDL = `
CREATE TABLE IF NOT EXISTS __puffgres_migrations (
  name        text        NOT NULL,
  version     integer     NOT NULL,
  file        text        NOT NULL,
  hash        text        NOT NULL,
  source      text        NOT NULL,
  namespace   text        NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS __puffgres_checkpoints (
  mapping          text PRIMARY KEY,
  last_lsn         pg_lsn,
  last_applied_at  timestamptz,
  docs_upserted    bigint NOT NULL DEFAULT 0,
  docs_deleted     bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS __puffgres_dlq (
  id               bigserial   PRIMARY KEY,
  mapping          text        NOT NULL,
  doc_id           text,
  lsn              pg_lsn,
  event            jsonb,
  error            text        NOT NULL,
  attempts         integer     NOT NULL DEFAULT 1,
  first_failed_at  timestamptz NOT NULL DEFAULT now(),
  last_failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS __puffgres_dlq_mapping ON __puffgres_dlq (mapping, id);
-- a dead letter of a document already queued updates its entry (postgres/dlq.ts): found by doc_id, not by a scan of
-- the mapping's queue; hash, since a document id made of key texts may be longer than a btree entry may be
CREATE INDEX IF NOT EXISTS __puffgres_dlq_doc_id ON __puffgres_dlq USING hash (doc_id);
CREATE TABLE IF NOT EXISTS __puffgres_backfill (
  mapping         text        NOT NULL,
  version         integer     NOT NULL,
  status          text        NOT NULL,
  last_key        jsonb,
  rows_done       bigint      NOT NULL DEFAULT 0,
  docs_written    bigint      NOT NULL DEFAULT 0,
  total_estimate  bigint,
  snapshot_lsn    pg_lsn,
  started_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz,
  PRIMARY KEY (mapping, version)
);
CREATE TABLE IF NOT EXISTS __puffgres_backfill_pages (
  id       bigserial   PRIMARY KEY,
  mapping  text        NOT NULL,
  version  integer     NOT NULL,
  lsn      pg_lsn      NOT NULL,
  keys     text        NOT NULL,
  read_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS __puffgres_backfill_pages_mapping ON __puffgres_backfill_pages (mapping, version, id);
-- a text[][] literal, written once and read back only after a crash: not worth compressing
ALTER TABLE __puffgres_backfill_pages ALTER COLUMN keys SET STORAGE EXTERNAL;
${KEPT_LIVE_DDL}
`

/** Creates the state tables that do not exist yet. Safe to run any number of times. */
export async function ensureStateTables(sql: postgres.Sql): Promise<void> {
  await sql.unsafe(DDL)
}

/** Which state tables exist (the dry run must not create them to find out). */
export async function existingStateTables(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    SELECT c.relname AS name FROM pg_class c
    WHERE c.relname = ANY(${STATE_TABLES as unknown as string[]}) AND c.relkind = 'r'
      AND pg_table_is_visible(c.oid)`
  return rows.map((r) => r.name)
}

export interface AppliedMigration {
  name: string
  version: number
  file: string
  hash: string
  applied_at: Date
}

export async function appliedMigrations(sql: postgres.Sql): Promise<AppliedMigration[]> {
  if (!(await existingStateTables(sql)).includes('__puffgres_migrations')) return []
  return await sql<AppliedMigration[]>`
    SELECT name, version, file, hash, applied_at FROM __puffgres_migrations ORDER BY name, version`
}

/** Adds the kept_live column where an older puffgres created the migrations table. */
export async function ensureKeptLive(sql: postgres.Sql): Promise<void> {
  await sql.unsafe(KEPT_LIVE_DDL)
}

/** The versions kept live during a re-index, as name@version. */
export async function keptVersions(sql: postgres.Sql): Promise<Set<string>> {
  if (!(await existingStateTables(sql)).includes('__puffgres_migrations')) return new Set()
  const rows = await sql<{ name: string; version: number }[]>`
    SELECT name, version FROM __puffgres_migrations m WHERE (to_jsonb(m) ->> 'kept_live')::boolean IS TRUE`
  return new Set(rows.map((r) => `${r.name}@${r.version}`))
}
