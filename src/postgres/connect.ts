import postgres from 'postgres'
import { TEXT_FORMAT_SETTINGS } from './values.ts'

/**
 * A small pool for ordinary SQL (state tables, catalog, re-reads, backfill). Never the replication connection. Its
 * sessions print values as the replication connection does, so `::text` output decodes the same way.
 */
export function connect(url: string, opts: { max?: number; application?: string } = {}): postgres.Sql {
  return postgres(url, {
    max: opts.max ?? 4,
    onnotice: () => {},
    idle_timeout: 30,
    connection: { application_name: opts.application ?? 'puffgres', ...TEXT_FORMAT_SETTINGS },
  })
}

/** Quotes an identifier for SQL text. */
export function ident(name: string): string {
  return '"' + name.replaceAll('"', '""') + '"'
}

export function qualified(schema: string, table: string): string {
  return `${ident(schema)}.${ident(table)}`
}
