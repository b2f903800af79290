// Reads puffgres.toml and the migration files into one validated, resolved configuration.
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { parseMembership, type Predicate } from '../membership/mod.ts'
import { parseTransformSpec, type TransformSpec } from './transform-spec.ts'
import { configEnv, expandEnv } from './env.ts'
import { ConfigError } from './errors.ts'
import {
  type ChunkingConfig,
  namespacesMayCollide,
  type NamespaceTemplate,
  parseNamespaceTemplate,
  rowDocumentsProblem,
} from './row-documents.ts'
import { describeIssues, type MigrationFile, migrationSchema, type ProjectFile, projectSchema } from './schema.ts'

export const DEFAULT_SLOT = 'puffgres'
export const DEFAULT_PUBLICATION = 'puffgres_pub'

export interface Mapping {
  /** the migration's name: one mapping per name, its highest version wins */
  name: string
  version: number
  /** the migration file, relative to the project folder */
  file: string
  /** sha256 of the file's bytes, to refuse edits to an applied migration */
  hash: string
  schema: string
  table: string
  idColumns: string[]
  /** undefined: every column of the table */
  columns?: string[]
  membership?: Predicate
  membershipText?: string
  /** a TypeScript module (path resolved against the project's puffgres/ folder) or a `bin:` command */
  transform?: TransformSpec
  truncate: 'delete_all' | 'ignore'
  embedding?: { source: string[]; attribute: string }
  /** the namespace; with a template, its text (PUFFGRES_BASE_NAMESPACE in front), e.g. "docs_{workspace_id}" */
  namespace: string
  /**
   * `[target] namespace = "docs_{workspace_id}"`: a namespace per tenant, the template parsed (the prefix included in
   * its first literal). Absent for a fixed name. A row's namespace: pipeline/row-namespace.ts rowNamespace.
   */
  namespaceTemplate?: NamespaceTemplate
  distanceMetric?: 'cosine_distance' | 'euclidean_squared'
  schemaHints?: Record<string, unknown>
  /** `[target] id_type = "string"`: every document id is a string (e.g. for negative integer keys) */
  idType?: 'string'
  /** `[mapping.chunking]`: a row becomes its chunk documents (row-documents mode, docs/ARCHITECTURE.md) */
  chunking?: ChunkingConfig
  /** `[mapping] documents = "many"`: the transform may return several documents a row (row-documents mode) */
  documents?: 'many'
}

export interface Config {
  /** the puffgres.toml file */
  file: string
  /** the folder holding puffgres.toml */
  root: string
  postgres: { connectionString: string }
  turbopuffer: { apiKey: string; baseUrl?: string; region?: string; namespaceMbPerSecond?: number }
  embeddings?: { type: 'together' | 'openai'; model: string; api_key: string; base_url?: string; batch_size?: number }
  stream: NonNullable<ProjectFile['stream']> & { slot: string; publication: string }
  /** every migration file, sorted by name then version */
  migrations: Mapping[]
  /** the active mapping of each name (highest version) */
  mappings: Mapping[]
}

function readToml(file: string, shown = file): unknown {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    throw new ConfigError(`${shown}: cannot read: ${(e as Error).message}`)
  }
  try {
    return parseToml(text, { integersAsBigInt: false })
  } catch (e) {
    const first = String((e as Error).message).split('\n')[0]
    throw new ConfigError(`${shown}: invalid TOML: ${first}`)
  }
}

/** The environment variables of the original puffgres and of turbopuffer's SDK that override the file. */
function envOverrides(env: Record<string, string | undefined>) {
  return {
    baseUrl: env.TURBOPUFFER_BASE_URL || undefined,
    region: env.TURBOPUFFER_REGION || undefined,
    namespacePrefix: env.PUFFGRES_BASE_NAMESPACE || '',
  }
}

export function loadConfig(path = 'puffgres.toml', baseEnv: Record<string, string | undefined> = process.env): Config {
  const file = resolve(path)
  if (!existsSync(file)) {
    throw new ConfigError(`${path}: not found (run \`puffgres init\` to create a project, or pass -c <path>)`)
  }
  const root = dirname(file)
  const env = configEnv(root, baseEnv)
  const shown = path
  const parsed = projectSchema.safeParse(expandEnv(readToml(file, shown), env, shown))
  if (!parsed.success) throw new ConfigError(describeIssues(shown, parsed.error))
  const p = parsed.data
  const over = envOverrides(env)
  const migrations = loadMigrations(root, env, over.namespacePrefix)
  const latest = new Map<string, Mapping>()
  for (const m of migrations) latest.set(m.name, m)
  const seen: Mapping[] = []
  for (const m of latest.values()) {
    const other = seen.find((o) => o.namespace === m.namespace)
    if (other) {
      throw new ConfigError(
        `${m.file}: target.namespace: "${m.namespace}" is also the namespace of mapping "${other.name}"`,
      )
    }
    // a template: listing its namespaces by prefix (TRUNCATE, verify) must find no other mapping's
    const near = (m.namespaceTemplate || seen.some((o) => o.namespaceTemplate)) &&
      seen.find((o) => namespacesMayCollide(templateOf(o), templateOf(m)))
    if (near) {
      throw new ConfigError(
        `${m.file}: target.namespace: "${m.namespace}" could name the same namespaces as "${near.namespace}" ` +
          `(mapping "${near.name}"): give each mapping a literal start the other's does not begin with ` +
          `(e.g. "docs_{...}" and "notes_{...}")`,
      )
    }
    seen.push(m)
  }
  return {
    file,
    root,
    postgres: { connectionString: p.postgres.connection_string },
    turbopuffer: {
      apiKey: p.turbopuffer.api_key,
      baseUrl: over.baseUrl ?? p.turbopuffer.base_url,
      region: over.region ?? p.turbopuffer.region,
      namespaceMbPerSecond: p.turbopuffer.namespace_mb_per_second,
    },
    embeddings: p.providers?.embeddings,
    stream: {
      ...p.stream,
      slot: p.stream?.slot ?? DEFAULT_SLOT,
      publication: p.stream?.publication ?? DEFAULT_PUBLICATION,
    },
    migrations,
    mappings: [...latest.values()],
  }
}

/** A mapping's namespace as a template (a fixed name is a template without placeholders). */
function templateOf(m: Mapping): NamespaceTemplate {
  return m.namespaceTemplate ?? parseNamespaceTemplate(m.namespace)
}

const MIGRATION_FILE = /^(\d+)_([A-Za-z0-9_.-]+)\.toml$/

function loadMigrations(root: string, env: Record<string, string | undefined>, prefix: string): Mapping[] {
  const dir = join(root, 'puffgres', 'migrations')
  if (!existsSync(dir)) return []
  const out: Mapping[] = []
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.toml')) continue
    const rel = join('puffgres', 'migrations', name)
    if (!MIGRATION_FILE.test(name)) {
      throw new ConfigError(`${rel}: migration files are named NNN_name.toml (e.g. 001_products.toml)`)
    }
    const full = join(dir, name)
    const bytes = readFileSync(full)
    const parsed = migrationSchema.safeParse(expandEnv(readToml(full, rel), env, rel))
    if (!parsed.success) throw new ConfigError(describeIssues(rel, parsed.error))
    out.push(toMapping(parsed.data, rel, root, createHash('sha256').update(bytes).digest('hex'), prefix))
  }
  const seen = new Map<string, string>()
  for (const m of out) {
    const key = `${m.name}@${m.version}`
    if (seen.has(key)) {
      throw new ConfigError(`${m.file}: migration.version: ${m.name} version ${m.version} is also in ${seen.get(key)}`)
    }
    seen.set(key, m.file)
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.version - b.version)
}

function toMapping(f: MigrationFile, rel: string, root: string, hash: string, prefix: string): Mapping {
  let membership: Predicate | undefined
  if (f.mapping.membership !== undefined) {
    try {
      membership = parseMembership(f.mapping.membership)
    } catch (e) {
      throw new ConfigError(`${rel}: mapping.membership: ${(e as Error).message.replace(/^membership: /, '')}`)
    }
  }
  let transform: TransformSpec | undefined
  try {
    transform = f.mapping.transform === undefined
      ? undefined
      : parseTransformSpec(f.mapping.transform, join(root, 'puffgres'))
  } catch (e) {
    throw new ConfigError(`${rel}: mapping.transform: ${(e as Error).message}`)
  }
  const idColumns = typeof f.mapping.id === 'string' ? [f.mapping.id] : f.mapping.id
  const embedding = f.mapping.embedding && {
    source: typeof f.mapping.embedding.source === 'string' ? [f.mapping.embedding.source] : f.mapping.embedding.source,
    attribute: f.mapping.embedding.attribute,
  }
  const rowDocs = rowDocumentsProblem({
    namespace: f.target.namespace,
    idColumns,
    columns: f.mapping.columns,
    chunking: f.mapping.chunking,
    embeddingSource: embedding?.source,
    documents: f.mapping.documents,
    hasTransform: transform !== undefined,
  })
  if (rowDocs) throw new ConfigError(`${rel}: ${rowDocs.field}: ${rowDocs.message}`)
  const namespaceTemplate = tenantTemplate(f.target.namespace, prefix, rel)
  return {
    name: f.migration.name,
    version: f.migration.version,
    file: rel,
    hash,
    schema: f.source.schema,
    table: f.source.table,
    idColumns,
    columns: f.mapping.columns,
    membership,
    membershipText: f.mapping.membership,
    transform,
    truncate: f.mapping.truncate,
    embedding,
    namespace: prefix + f.target.namespace,
    ...(namespaceTemplate ? { namespaceTemplate } : {}),
    distanceMetric: f.target.distance_metric,
    schemaHints: f.target.schema,
    idType: f.target.id_type === 'string' ? 'string' : undefined,
    chunking: f.mapping.chunking,
    documents: f.mapping.documents === 'many' ? 'many' : undefined,
  }
}

/** `[target] namespace` with {column} placeholders, parsed with PUFFGRES_BASE_NAMESPACE in front; else undefined. */
function tenantTemplate(text: string, prefix: string, rel: string): NamespaceTemplate | undefined {
  if (parseNamespaceTemplate(text).columns.length === 0) return undefined
  if (!/^[A-Za-z0-9_.-]*$/.test(prefix)) {
    throw new ConfigError(
      `${rel}: target.namespace: PUFFGRES_BASE_NAMESPACE "${prefix}" is not the start of a namespace name ` +
        '(letters, digits, "-", "_", ".")',
    )
  }
  const template = parseNamespaceTemplate(prefix + text)
  // the shortest name it renders (one character a placeholder): longer than turbopuffer takes, every row would be a
  // dead letter
  const shortest = template.parts.reduce((n, p) => n + ('literal' in p ? p.literal.length : 1), 0)
  if (shortest > 128) {
    throw new ConfigError(
      `${rel}: target.namespace: "${text}" with PUFFGRES_BASE_NAMESPACE in front renders names of ${shortest}+ ` +
        'characters, over the 128 turbopuffer takes; shorten the literal text or the prefix',
    )
  }
  return template
}
