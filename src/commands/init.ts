// `puffgres init [PATH]`: scaffolds a project. Never overwrites a file.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
// the types a transform sees, as text: written as puffgres/puffgres.d.ts (bundled into the single-file binary too)

export const help = `puffgres init [PATH]

Creates a puffgres project in PATH (default: the current folder):
  puffgres.toml                          connection settings (\${VAR} expands environment variables)
  .env.example                           the variables puffgres.toml refers to
  puffgres/migrations/001_example.toml   a commented example mapping (table → namespace)
  puffgres/transforms/example.ts         an example TypeScript transform
  puffgres/puffgres.d.ts                 types, so \`import type { RowEvent, Action } from 'puffgres'\` type-checks
  puffgres/tsconfig.json                 points editors at those types
Refuses to overwrite any existing file.
`

const CONFIG =
  `# puffgres configuration. \${VAR} is replaced by the environment variable VAR (a .env file next to this one,
# or in a parent folder, is read too); \${VAR:-default} gives a default.

[postgres]
connection_string = "\${DATABASE_URL}"

[turbopuffer]
api_key = "\${TURBOPUFFER_API_KEY}"
# base_url = "http://127.0.0.1:8787"   # e.g. \`puffgres local\`; or set TURBOPUFFER_BASE_URL
# region = "gcp-us-central1"           # or set TURBOPUFFER_REGION

# Embeddings, for [mapping.embedding] and ctx.embed() in transforms:
# [providers.embeddings]
# type = "together"          # or "openai" (any OpenAI-compatible endpoint; set base_url)
# model = "BAAI/bge-base-en-v1.5"
# api_key = "\${TOGETHER_API_KEY}"

# [stream]
# slot = "puffgres"              # replication slot
# publication = "puffgres_pub"
# poll_interval_ms = 1000         # the longest a change waits in a batch before it is written
`

const ENV_EXAMPLE = `DATABASE_URL=postgres://user:password@localhost:5432/mydb
TURBOPUFFER_API_KEY=tpuf_your_key
# TURBOPUFFER_BASE_URL=http://127.0.0.1:8787
# TOGETHER_API_KEY=
# PUFFGRES_BASE_NAMESPACE=dev_      # prefix for every namespace, e.g. per environment
`

const MIGRATION =
  `# A migration maps one table to one turbopuffer namespace. Once applied (puffgres migrate), a file must not
# change: to change a mapping, add a file with the same [migration] name and a higher version.

[migration]
name = "products"        # the mapping's name, used by \`puffgres backfill products\`
version = 1

[source]
schema = "public"
table = "products"

[mapping]
id = "id"                                  # a column, or a list for a composite key: ["tenant_id", "id"]
columns = ["id", "name", "price", "status"]  # omit to map every column
membership = "status = 'active'"           # which rows belong in the namespace (SQL-like; optional)
# transform = "transforms/example.ts"      # relative to this puffgres/ folder; or "bin:./my-transform"
# truncate = "delete_all"                  # or "ignore" (logged as a warning)

# [mapping.embedding]                      # embed without code (needs [providers.embeddings])
# source = ["name"]
# attribute = "vector"

[target]
namespace = "products"
# distance_metric = "cosine_distance"

# id_type = "string"                      # string ids (e.g. negative integer keys); default: integers are uint

# [target.schema]                          # overrides the types derived from the column types (migrate --dry-run)
# price = "float"
# name = { type = "string", full_text_search = true }
`

const TRANSFORM = `import type { Action, RowEvent, TransformContext } from 'puffgres'

// Called for every change of the mapped table. Return an upsert, a delete or a skip.
export default function transform(event: RowEvent, _ctx: TransformContext): Action {
  if (event.type === 'delete') return { type: 'delete', id: event.id }
  const row = event.new!
  return {
    type: 'upsert',
    id: event.id,
    attributes: {
      name: row.name,
      price: row.price,
      searchText: \`\${row.name}\`.toLowerCase(),
    },
  }
}
`

const TSCONFIG = `{
  "compilerOptions": {
    "target": "ES2022",
    "module": "ESNext",
    "moduleResolution": "Bundler",
    "strict": true,
    "noEmit": true,
    "allowImportingTsExtensions": true,
    "paths": { "puffgres": ["./puffgres.d.ts"] }
  },
  "include": ["transforms/**/*.ts", "puffgres.d.ts"]
}
`

/**
 * The text of src/transform-types.ts, the file `init` writes as puffgres.d.ts. Imported when `init` runs, not with
 * the command table: a text import needs Deno 2.8 or later (older ones need --unstable-raw-imports), and every other
 * command must still start there.
 */
async function typesFile(): Promise<string> {
  return (await import('../transform-types.ts', { with: { type: 'text' } })).default as unknown as string
}

export async function scaffold(dir: string): Promise<string[]> {
  const TYPES_FILE = await typesFile()
  const root = resolve(dir)
  const files: Array<[string, string]> = [
    ['puffgres.toml', CONFIG],
    ['.env.example', ENV_EXAMPLE],
    ['puffgres/migrations/001_example.toml', MIGRATION],
    ['puffgres/transforms/example.ts', TRANSFORM],
    ['puffgres/puffgres.d.ts', TYPES_FILE],
    ['puffgres/tsconfig.json', TSCONFIG],
  ]
  const clash = files.map(([f]) => join(root, f)).filter((f) => existsSync(f))
  if (clash.length) {
    throw new Error(`refusing to overwrite ${clash.map((f) => relative(process.cwd(), f) || f).join(', ')}`)
  }
  for (const [f, text] of files) {
    const full = join(root, f)
    mkdirSync(join(full, '..'), { recursive: true })
    writeFileSync(full, text, { flag: 'wx' })
  }
  return files.map(([f]) => f)
}

export async function initCommand(argv: string[]): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true })
  const dir = positionals[0] ?? '.'
  try {
    const files = await scaffold(dir)
    for (const f of files) console.log(`created ${join(dir, f)}`)
    console.log(`
Next: copy .env.example to .env and fill it in, edit puffgres/migrations/001_example.toml, then
  puffgres migrate --dry-run && puffgres migrate && puffgres backfill products && puffgres run`)
    return 0
  } catch (e) {
    console.error(`error: init: ${(e as Error).message}`)
    return 1
  }
}
