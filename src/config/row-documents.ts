// The configuration shapes of a row's documents (docs/ARCHITECTURE.md, "A row's documents"; issues 24 and 25):
// `[target] namespace = "docs_{workspace_id}"` (a namespace per tenant) and `[mapping.chunking]` (long text as
// several documents). Parsed and checked here. The writer applies chunking (pipeline/transform/chunk-documents.ts,
// turbopuffer/write-plan.ts) and tenant templates (pipeline/row-namespace.ts gives a row's namespace).
import { z } from 'zod'

export type ChunkBoundary = 'paragraph' | 'sentence' | 'word'

/** where a chunk may end, in the order the chunker prefers them (pipeline/chunking.ts) */
export const CHUNK_BOUNDARIES: readonly ChunkBoundary[] = ['paragraph', 'sentence', 'word']

/** turbopuffer's rule for a namespace name */
export const NAMESPACE_NAME = /^[A-Za-z0-9_.-]{1,128}$/
const NAME_RULE = 'turbopuffer namespace names are [A-Za-z0-9-_.]{1,128}'

/** `docs_{workspace_id}`: literal text and the columns whose values fill the placeholders. */
export interface NamespaceTemplate {
  text: string
  parts: Array<{ literal: string } | { column: string }>
  /** the placeholder columns, each once, in order */
  columns: string[]
}

const LITERAL = /^[A-Za-z0-9_.-]*$/

/** Parses a `[target] namespace`; throws an Error whose message says what is wrong (without the file). */
export function parseNamespaceTemplate(text: string): NamespaceTemplate {
  const parts: NamespaceTemplate['parts'] = []
  const columns: string[] = []
  let i = 0
  while (i < text.length) {
    const open = text.indexOf('{', i)
    const literal = text.slice(i, open === -1 ? text.length : open)
    if (literal.includes('}')) throw new Error(`"}" without "{" in "${text}"`)
    if (!LITERAL.test(literal)) {
      const bad = [...literal].find((c) => !LITERAL.test(c))
      throw new Error(`${NAME_RULE}; ${JSON.stringify(bad)} in "${text}" is not (a placeholder is {column})`)
    }
    if (literal) parts.push({ literal })
    if (open === -1) break
    const close = text.indexOf('}', open)
    if (close === -1) throw new Error(`"{" without "}" in "${text}"`)
    const column = text.slice(open + 1, close)
    if (column === '' || column.includes('{')) {
      throw new Error(`"${text}": a placeholder names one column, like {workspace_id}`)
    }
    if (column.length > 63) {
      throw new Error(`"${text}": {${column.slice(0, 20)}…} is longer than a PostgreSQL column name`)
    }
    const prev = parts[parts.length - 1]
    if (prev && 'column' in prev) {
      // "{a}{b}" cannot be told apart: a="1", b="23" and a="12", b="3" would share a namespace
      throw new Error(`"${text}": put a separator between {${prev.column}} and {${column}}`)
    }
    parts.push({ column })
    if (!columns.includes(column)) columns.push(column)
    i = close + 1
  }
  if (parts.length === 0) throw new Error('must not be empty')
  if (columns.length === 0 && !NAMESPACE_NAME.test(text)) {
    throw new Error(`${NAME_RULE}; "${text.length > 40 ? text.slice(0, 37) + '...' : text}" is not`)
  }
  return { text, parts, columns }
}

/** Why a template does not fit the columns the mapping reads (`columns` undefined: every column), or undefined. */
export function checkTemplateColumns(template: NamespaceTemplate, columns: readonly string[]): string | undefined {
  const missing = template.columns.filter((c) => !columns.includes(c))
  if (missing.length === 0) return undefined
  return `{${missing[0]}} names no column of the mapping (${columns.join(', ')})`
}

export type RenderedNamespace = { ok: true; namespace: string } | { ok: false; error: string }

/**
 * The namespace of one row: the prefix (PUFFGRES_BASE_NAMESPACE) and the template filled from `value(column)`. A
 * NULL, a value that is not text or a number, or a result that is not a valid turbopuffer namespace name is an
 * error naming the column, the value and the fix (the caller dead-letters the row with it).
 */
export function renderNamespace(
  template: NamespaceTemplate,
  prefix: string,
  value: (column: string) => unknown,
): RenderedNamespace {
  let out = prefix
  for (const part of template.parts) {
    if ('literal' in part) {
      out += part.literal
      continue
    }
    const v = value(part.column)
    let text: string
    if (v === '') {
      // "docs_" is a valid name, but not one the template's listing pattern finds (TRUNCATE, verify, status)
      return {
        ok: false,
        error: `namespace "${template.text}": ${part.column} is empty, so the row has no namespace; leave such rows ` +
          `out with a membership predicate (${part.column} <> '')`,
      }
    }
    if (typeof v === 'string') text = v
    else if (typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v))) text = String(v)
    else if (v === null || v === undefined) {
      return {
        ok: false,
        error: `namespace "${template.text}": ${part.column} is NULL, so the row has no namespace; ` +
          `make the column NOT NULL or leave such rows out with a membership predicate (${part.column} IS NOT NULL)`,
      }
    } else {
      return {
        ok: false,
        error: `namespace "${template.text}": ${part.column} is ${Array.isArray(v) ? 'an array' : typeof v}, ` +
          'not text or a whole number; choose a text or integer column',
      }
    }
    out += text
  }
  if (!NAMESPACE_NAME.test(out)) {
    const shown = out.length > 140 ? out.slice(0, 137) + '...' : out
    return {
      ok: false,
      error: `namespace "${template.text}" gives ${JSON.stringify(shown)}, not a valid turbopuffer namespace name ` +
        `([A-Za-z0-9-_.]{1,128}): ${template.columns.join(', ')} must hold only letters, digits, "-", "_" and "." ` +
        `(and the whole name fit 128 characters); map the values in a transform or route on another column`,
    }
  }
  return { ok: true, namespace: out }
}

/**
 * Every assignment of texts to the template's placeholder columns that renderNamespace (prefix "") turns into `name`:
 * the values a row must render to be routed there. Usually one; a separator that a value may also hold gives more
 * (`docs_{a}_{b}` renders `docs_x_y_z` from a = "x", b = "y_z" and from a = "x_y", b = "z"). A placeholder may
 * render nothing (an empty string). Undefined when there are more than `limit` (or finding them takes more than a
 * thousand steps per allowed assignment).
 */
export function placeholderValues(
  template: NamespaceTemplate,
  name: string,
  limit: number,
): Array<Record<string, string>> | undefined {
  const out: Array<Record<string, string>> = []
  const values: Record<string, string> = {}
  let steps = limit * 1000
  const match = (part: number, at: number): boolean => {
    if (--steps < 0) return false
    if (part === template.parts.length) {
      if (at === name.length) out.push({ ...values })
      return out.length <= limit
    }
    const p = template.parts[part]
    if ('literal' in p) return !name.startsWith(p.literal, at) || match(part + 1, at + p.literal.length)
    const known = values[p.column]
    // a column named twice renders the same text both times
    if (known !== undefined) return !name.startsWith(known, at) || match(part + 1, at + known.length)
    for (let end = at; end <= name.length; end++) {
      values[p.column] = name.slice(at, end)
      if (!match(part + 1, end)) return false
    }
    delete values[p.column]
    return true
  }
  return match(0, 0) ? out : undefined
}

/** `[mapping.chunking]`: split text columns into chunk documents (src/pipeline/chunking.ts). */
export const chunkingSchema = z.strictObject({
  /** the text column(s); several are joined with a blank line before chunking */
  source: z.union([z.string().min(1), z.array(z.string().min(1)).min(1, 'needs at least one column')]),
  /** most characters (Unicode code points) per chunk */
  size: z.int().min(1).max(1_000_000),
  /** characters a chunk repeats from the end of the previous one (whole words), less than size */
  overlap: z.int().min(0).default(0),
  /** where a chunk may end, most preferred first; [] cuts at size */
  boundaries: z.array(z.enum(CHUNK_BOUNDARIES as [ChunkBoundary, ...ChunkBoundary[]])).default([...CHUNK_BOUNDARIES]),
  /** the attribute holding each chunk's text */
  attribute: z.string().min(1).default('chunk'),
}).superRefine((c, ctx) => {
  if (c.overlap >= c.size) {
    ctx.addIssue({
      code: 'custom',
      path: ['overlap'],
      message: `must be less than size (${c.size}), got ${c.overlap}`,
    })
  }
  if (new Set(c.boundaries).size !== c.boundaries.length) {
    ctx.addIssue({ code: 'custom', path: ['boundaries'], message: 'names a boundary twice' })
  }
})

export type ChunkingConfig = z.infer<typeof chunkingSchema>

/** `[target] namespace`: a name or a template, checked by parseNamespaceTemplate. */
export const namespaceTemplateSchema = z.string().superRefine((text, ctx) => {
  try {
    parseNamespaceTemplate(text)
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message })
  }
})

/** What a mapping says about its documents, as far as these checks need it. */
export interface RowDocumentsSpec {
  namespace: string
  idColumns: string[]
  /** undefined: every column of the table (checked against the catalog by `migrate`) */
  columns?: string[]
  chunking?: ChunkingConfig
  embeddingSource?: string[]
  /** `[mapping] documents` */
  documents?: 'one' | 'many'
  hasTransform?: boolean
}

/**
 * Row-documents mode (docs/ARCHITECTURE.md, "A row's documents"): every write of a row replaces all of its documents,
 * found by `_puffgres_row`. `[mapping.chunking]`, or a transform that returns several documents.
 */
export function rowDocumentsMode(m: { chunking?: unknown; documents?: 'many' }): boolean {
  return m.chunking !== undefined || m.documents === 'many'
}

/** The first problem of a mapping's tenant template or chunking, as `field: message`; undefined when it has none. */
export function rowDocumentsProblem(m: RowDocumentsSpec): { field: string; message: string } | undefined {
  const template = parseNamespaceTemplate(m.namespace)
  const readable = m.columns && [...m.idColumns, ...m.columns]
  if (readable) {
    const bad = checkTemplateColumns(template, readable)
    if (bad) return { field: 'target.namespace', message: bad }
  }
  const c = m.chunking
  if (m.documents === 'many' && c) {
    return {
      field: 'mapping.documents',
      message: '[mapping.chunking] makes the documents of a row: leave documents = "many" out',
    }
  }
  if (m.documents === 'many' && !m.hasTransform) {
    return {
      field: 'mapping.documents',
      message: '"many" needs a transform that returns { type: \'upsert\', documents: [...] }',
    }
  }
  if (c) {
    const sources = typeof c.source === 'string' ? [c.source] : c.source
    const missing = readable && sources.find((s) => !readable.includes(s))
    if (missing) {
      return {
        field: 'mapping.chunking.source',
        message: `"${missing}" is not a column of the mapping (${readable.join(', ')})`,
      }
    }
    if (
      c.attribute === 'id' || c.attribute === 'vector' || c.attribute.startsWith('_puffgres_') ||
      c.attribute.startsWith('$')
    ) {
      return {
        field: 'mapping.chunking.attribute',
        message: `"${c.attribute}" is reserved; name the chunk text attribute otherwise`,
      }
    }
    if (m.embeddingSource && (m.embeddingSource.length !== 1 || m.embeddingSource[0] !== c.attribute)) {
      return {
        field: 'mapping.embedding.source',
        message: `with [mapping.chunking] each chunk is embedded: set source = "${c.attribute}" (the chunk attribute)`,
      }
    }
  }
  return undefined
}

/** The literal text before a template's first placeholder (all of it for a fixed name): what listing starts from. */
export function literalPrefix(template: NamespaceTemplate): string {
  let out = ''
  for (const part of template.parts) {
    if ('column' in part) break
    out += part.literal
  }
  return out
}

/** Matches exactly the names `template` (after `prefix`) can render: a placeholder renders 1+ name characters. */
export function templatePattern(template: NamespaceTemplate, prefix = ''): RegExp {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')
  const body = template.parts.map((p) => 'literal' in p ? escape(p.literal) : '[A-Za-z0-9_.-]+').join('')
  return new RegExp(`^${escape(prefix)}${body}$`)
}

/**
 * Whether two mappings' namespaces could be the same name, or one's listing by its literal prefix could find the
 * other's: then config refuses the pair. Two fixed names collide only when equal; otherwise when one literal prefix
 * begins the other's (conservative: "docs_{ws}" and "docs_archive_{ws}" are refused, "docs_{ws}" and "notes_{ws}"
 * are not).
 */
export function namespacesMayCollide(a: NamespaceTemplate, b: NamespaceTemplate): boolean {
  if (a.columns.length === 0 && b.columns.length === 0) return a.text === b.text
  const pa = literalPrefix(a)
  const pb = literalPrefix(b)
  if (a.columns.length === 0) return templatePattern(b).test(a.text) || a.text.startsWith(pb) && pb !== ''
  if (b.columns.length === 0) return namespacesMayCollide(b, a)
  return pa.startsWith(pb) || pb.startsWith(pa)
}
