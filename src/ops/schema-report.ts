// The attribute schema each mapping declares, read from the catalog as backfill and the stream derive it: for
// `migrate --dry-run` and `status`.
import type postgres from 'postgres'
import type { Mapping } from '../config/load.ts'
import { planReads } from '../source/mod.ts'
import { neededColumns } from '../pipeline/routes.ts'
import { DEFAULT_DISTANCE_METRIC } from '../pipeline/writer.ts'
import { type AttributeSpec, describeAttribute, mappingAttributes } from '../pipeline/schema.ts'

export interface AttributeReport extends AttributeSpec {
  /** the PostgreSQL type, or "(transform)" for an attribute only `[target.schema]` declares */
  pg_type: string
  /** "json-text": sent as the value's JSON text */
  form?: 'json-text'
  /** set by `[target.schema]` */
  override?: true
}

export interface SchemaReport {
  /** "string" with `[target] id_type = "string"`; otherwise integer ids are uint and others string */
  id_type: 'auto' | 'string'
  attributes: Record<string, AttributeReport>
  /** one line per attribute, as the text reports show them */
  lines: string[]
}

/** The mapping's declared schema; undefined when its table cannot be read (the caller reports that elsewhere). */
export async function mappingSchema(sql: postgres.Sql, m: Mapping): Promise<SchemaReport | undefined> {
  let plan
  try {
    plan = await planReads(sql, m, neededColumns(m))
  } catch {
    return undefined
  }
  const attributes: Record<string, AttributeReport> = {}
  const lines: string[] = []
  for (const [name, a] of mappingAttributes(m, plan.tableColumns)) {
    attributes[name] = {
      ...a.spec,
      pg_type: a.pgType,
      ...(a.form === 'json-text' ? { form: 'json-text' as const } : {}),
      ...(a.overridden ? { override: true as const } : {}),
    }
    lines.push(describeAttribute(name, a))
  }
  // the document vector: a column named `vector` the mapping reads as it is, or an embedding
  const vectorColumn = !m.transform && plan.columns.some((c) => c.name === 'vector')
  if (vectorColumn || m.embedding) {
    lines.push(
      m.distanceMetric
        ? `vector (document vector): distance_metric ${m.distanceMetric}`
        : `vector (document vector): distance_metric ${DEFAULT_DISTANCE_METRIC} (the default; set [target] distance_metric)`,
    )
  }
  return { id_type: m.idType ?? 'auto', attributes, lines }
}
