// The shapes of `puffgres.toml` and of `puffgres/migrations/NNN_name.toml`. Unknown keys are errors: a typo must not
// be ignored silently.
import { z } from 'zod'
import { chunkingSchema, namespaceTemplateSchema } from './row-documents.ts'

const nonEmpty = z.string().min(1, 'must not be empty')

export const projectSchema = z.strictObject({
  postgres: z.strictObject({ connection_string: nonEmpty }),
  turbopuffer: z.strictObject({
    api_key: nonEmpty,
    base_url: nonEmpty.optional(),
    region: nonEmpty.optional(),
    /** pacing of writes per namespace (turbopuffer takes ~32 MB/s a namespace); 0: none */
    namespace_mb_per_second: z.number().min(0).optional(),
  }),
  providers: z.strictObject({
    embeddings: z.strictObject({
      type: z.enum(['together', 'openai']),
      model: nonEmpty,
      api_key: nonEmpty,
      base_url: nonEmpty.optional(),
      batch_size: z.int().min(1).max(2048).optional(),
    }).optional(),
  }).optional(),
  stream: z.strictObject({
    slot: z.string().regex(/^[a-z0-9_]{1,63}$/, 'lowercase letters, digits and _ only (a PostgreSQL slot name)')
      .optional(),
    publication: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'a plain PostgreSQL identifier').optional(),
    poll_interval_ms: z.int().min(1).optional(),
    batch_size: z.int().min(1).optional(),
    metrics_port: z.int().min(0).max(65535).optional(),
    max_lag_seconds: z.number().positive().optional(),
    heartbeat_interval_ms: z.int().min(0).optional(),
    max_retained_wal_mb: z.number().positive().optional(),
    /** PostgreSQL 17+: make the slot a failover slot (synced to standbys); default true; no such option before 17 */
    failover_slot: z.boolean().optional(),
    /** scale-out: the mappings this process streams (default all); see config/selection.ts */
    mappings: z.array(z.string().min(1)).optional(),
  }).optional(),
})

export type ProjectFile = z.infer<typeof projectSchema>

const identifier = z.string().min(1, 'must not be empty').max(63, 'longer than 63 bytes (PostgreSQL identifier)')

const ATTRIBUTE_TYPE = /^(\[\])?(string|int|uint|float|uuid|datetime|bool)$|^\[\d+\]f(16|32)$/
const attributeType = z.string().regex(
  ATTRIBUTE_TYPE,
  'a turbopuffer type: string, int, uint, float, uuid, datetime, bool, or an array of one ([]string, ...)',
)

/** `price = "float"` (the original puffgres's shorthand) or `{ type = "string", filterable = false, ... }` */
export const tpufTypeSchema = z.union([
  attributeType,
  z.looseObject({
    type: attributeType,
    filterable: z.boolean().optional(),
    full_text_search: z.union([z.boolean(), z.record(z.string(), z.unknown())]).optional(),
  }),
])

export const migrationSchema = z.strictObject({
  migration: z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, 'letters, digits, "_", "-" and "." only'),
    version: z.int().min(1),
  }),
  source: z.strictObject({
    table: identifier,
    schema: identifier.default('public'),
  }),
  mapping: z.strictObject({
    id: z.union([identifier, z.array(identifier).min(1, 'needs at least one column')]),
    columns: z.array(identifier).min(1, 'needs at least one column').optional(),
    membership: z.string().optional(),
    transform: nonEmpty.optional(),
    truncate: z.enum(['delete_all', 'ignore']).default('delete_all'),
    embedding: z.strictObject({
      source: z.union([nonEmpty, z.array(nonEmpty).min(1)]),
      attribute: nonEmpty.default('vector'),
    }).optional(),
    /** long text as several documents (parsed and checked; config/load.ts refuses it until the writer applies it) */
    chunking: chunkingSchema.optional(),
  }),
  target: z.strictObject({
    /** a name, or a template naming columns: "docs_{workspace_id}" (config/row-documents.ts) */
    namespace: namespaceTemplateSchema,
    distance_metric: z.enum(['cosine_distance', 'euclidean_squared']).optional(),
    schema: z.record(z.string(), tpufTypeSchema).optional(),
    id_type: z.enum(['auto', 'string']).default('auto'),
  }),
})

export type MigrationFile = z.infer<typeof migrationSchema>

/** Turns zod issues into one line naming the file and the first failing field. */
export function describeIssues(file: string, error: z.ZodError): string {
  const issue = error.issues[0]
  const field = issue.path.map(String).join('.') || '(top level)'
  let msg = issue.message.replace(/^Invalid input: /, '')
  if (issue.code === 'invalid_type' && /received undefined/.test(msg)) msg = 'is required'
  if (issue.code === 'unrecognized_keys') {
    return `${file}: ${[...issue.path.map(String), issue.keys.join(', ')].filter(Boolean).join('.')}: unknown key`
  }
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more)` : ''
  return `${file}: ${field}: ${msg}${more}`
}
