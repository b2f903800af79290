// Writes a puffgres project (puffgres.toml + migrations + transforms) into a temp folder for a test.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface ProjectSpec {
  databaseUrl: string
  turbopufferUrl?: string
  /** extra TOML appended to puffgres.toml */
  extra?: string
  /** file name (e.g. 001_items.toml) → contents */
  migrations?: Record<string, string>
  /** path under puffgres/ (e.g. transforms/x.ts) → contents */
  files?: Record<string, string>
}

export interface Project {
  dir: string
  config: string
  write(rel: string, text: string): void
  remove(): void
}

export function makeProject(spec: ProjectSpec): Project {
  const dir = mkdtempSync(join(tmpdir(), 'puffgres-proj-'))
  const write = (rel: string, text: string) => {
    const full = join(dir, rel)
    mkdirSync(join(full, '..'), { recursive: true })
    writeFileSync(full, text)
  }
  write(
    'puffgres.toml',
    `[postgres]
connection_string = "${spec.databaseUrl}"

[turbopuffer]
api_key = "test-key"
${spec.turbopufferUrl ? `base_url = "${spec.turbopufferUrl}"` : ''}
${spec.extra ?? ''}
`,
  )
  mkdirSync(join(dir, 'puffgres', 'migrations'), { recursive: true })
  for (const [f, t] of Object.entries(spec.migrations ?? {})) write(join('puffgres', 'migrations', f), t)
  for (const [f, t] of Object.entries(spec.files ?? {})) write(join('puffgres', f), t)
  return { dir, config: join(dir, 'puffgres.toml'), write, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** A minimal migration file. */
export function migration(o: {
  name: string
  version?: number
  table: string
  id?: string | string[]
  columns?: string[]
  membership?: string
  transform?: string
  namespace?: string
  extra?: string
}): string {
  const toml = (v: unknown) => JSON.stringify(v)
  return `[migration]
name = ${toml(o.name)}
version = ${o.version ?? 1}

[source]
table = ${toml(o.table)}

[mapping]
id = ${toml(o.id ?? 'id')}
${o.columns ? `columns = ${toml(o.columns)}` : ''}
${o.membership ? `membership = ${toml(o.membership)}` : ''}
${o.transform ? `transform = ${toml(o.transform)}` : ''}
${o.extra ?? ''}

[target]
namespace = ${toml(o.namespace ?? o.name)}
`
}
