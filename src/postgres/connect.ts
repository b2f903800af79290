import postgres from 'postgres'

/** A small pool for ordinary SQL (state tables, catalog, backfill reads). Never the replication connection. */
export function connect(url: string, opts: { max?: number; application?: string } = {}): postgres.Sql {
  return postgres(url, {
    max: opts.max ?? 4,
    onnotice: () => {},
    idle_timeout: 30,
    connection: { application_name: opts.application ?? 'puffgres' },
  })
}

/** Quotes an identifier for SQL text. */
export function ident(name: string): string {
  return '"' + name.replaceAll('"', '""') + '"'
}

export function qualified(schema: string, table: string): string {
  return `${ident(schema)}.${ident(table)}`
}
