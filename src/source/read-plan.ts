// What is read of one mapping's table and how (the read plan of backfill, verify, dlq retry, status and migrate): the
// selected columns with the types that decode them, and the SQL of its keyset pages, of a sample, of the re-check of a
// written page, and of the count of rows that cannot be paged (NULL ids).
import type postgres from 'postgres'
import type { Mapping } from '../config/load.ts'
import { ident, qualified } from '../postgres/connect.ts'
import { toSql } from '../membership/mod.ts'
import { quoteLiteral } from '../membership/sql.ts'
import { type CatalogColumn, catalogColumns, columnType, findTable, uniqueIndexColumns } from './catalog.ts'

export interface PlanColumn {
  name: string
  typeOid: number
  /**
   * The type's name for non-builtin types only, exactly what the stream gets from pgoutput's Type messages (sent for
   * OIDs ≥ 10000), so that both paths decode a value and declare its attribute type the same way.
   */
  typeName?: string
  /** `atttypmod` (-1: none): varchar(n)/char(n) lengths decide whether a string attribute is filterable */
  typmod: number
}

export interface ReadPlan {
  mapping: Mapping
  /** `"schema"."table"` */
  table: string
  /** every column of the table (the namespace schema is declared from these) */
  tableColumns: PlanColumn[]
  /** the columns a page selects, in table order */
  columns: PlanColumn[]
  /** position of each id column in `columns` */
  keyIndex: number[]
  /** a unique index (or the primary key) covers the id columns: keyset paging is exact and uses the index */
  keyIndexed: boolean
  /** `pg_class.reltuples`; undefined when the table was never analyzed */
  estimate?: number
  /** each id column's type as a cast names it (`bigint`, `character(10)`): the COPY page's key literals */
  keyTypes: string[]
  /**
   * the page queries' parts: `select` (up to its WHERE conditions), the id columns' row, `order` (ORDER BY). The
   * columns are selected as they are: COPY prints each with its type's output function, as pgoutput does for the
   * stream (a `::text` cast would cost PostgreSQL a third more per row, and prints inet and bool otherwise)
   */
  pageParts: { select: string; keyRow: string; order: string }
  /**
   * `$1..$k`: text[] of key texts, one array per id column, in the page's (ascending key) order; `$k+1..$2k`: the
   * first key, `$2k+1..$3k`: the last. Returns (`i`) the 1-based positions of the keys whose row is gone or no longer
   * satisfies the membership predicate: usually none, so the answer costs next to nothing.
   */
  recheckSql: string
  /** counts the member rows with a NULL id column (they cannot be documents, and paging skips them) */
  nullIdSql: string
  /**
   * A namespace per tenant: the position in `columns` of each placeholder column of the template (in the template's
   * order), and `movedSql`: `$1..$k` the page's key texts as in recheckSql, `$k+1..$k+p` text[] of each placeholder
   * column's texts as the page read them (NULL elements for NULL), then the first and the last key. Returns (`i`) the
   * 1-based positions of the keys whose row is there now with a placeholder column printed otherwise (its output
   * function, as COPY printed the page's: `format('%s')`, not a `::text` cast; compared byte for byte): the only rows
   * whose namespace can differ from the one the page wrote (a namespace is rendered from these texts' values).
   * Usually none, so the answer costs next to nothing.
   */
  placeholders?: { index: number[]; movedSql: string }
}

/**
 * A restriction of a plan's pages and samples to some rows (`verify --tenant`: one tenant's): a condition on the
 * page's table alias (ROW_ALIAS) that reads its values as `current_setting('puffgres.filter_<i>')`, never as
 * literals. COPY takes no parameters: the reader binds `values[i]` to those settings, in the COPY's transaction
 * (page.ts).
 */
export interface RowFilter {
  condition: string
  values: string[]
}

/** The name of the setting holding a RowFilter's `values[i]`. */
export const filterSetting = (i: number) => `puffgres.filter_${i}`

/** Reads the table from the catalog and renders the SQL; throws a one-line error naming the mapping's file. */
export async function planReads(
  sql: postgres.Sql,
  mapping: Mapping,
  needed: Set<string> | undefined,
): Promise<ReadPlan> {
  const where = `${mapping.file}: source`
  const rel = await findTable(sql, mapping.schema, mapping.table)
  if (!rel) throw new Error(`${where}: table ${mapping.schema}.${mapping.table} does not exist`)
  const cols = await catalogColumns(sql, rel.oid)
  const byName = new Map(cols.map((c) => [c.name, c]))
  for (const k of mapping.idColumns) {
    if (!byName.has(k)) {
      throw new Error(`${mapping.file}: mapping.id: column "${k}" is not in ${mapping.schema}.${mapping.table}`)
    }
  }
  for (const c of needed ?? []) {
    if (!byName.has(c)) throw new Error(`${mapping.file}: column "${c}" is not in ${mapping.schema}.${mapping.table}`)
  }
  const unique = await uniqueIndexColumns(sql, rel.oid)
  const ids = new Set(mapping.idColumns)
  const keyIndexed = unique.some((cols) => cols.length > 0 && cols.every((c) => ids.has(c)))

  const toPlan = (c: CatalogColumn): PlanColumn => columnType(c) as PlanColumn
  const selected = cols.filter((c) => !needed || needed.has(c.name) || ids.has(c.name))
  const columns = selected.map(toPlan)
  const keyIndex = mapping.idColumns.map((k) => columns.findIndex((c) => c.name === k))
  const table = qualified(mapping.schema, mapping.table)
  const keyTypes = mapping.idColumns.map((k) => byName.get(k)!.castType)
  return {
    mapping,
    table,
    tableColumns: cols.map(toPlan),
    columns,
    keyIndex,
    keyIndexed,
    keyTypes,
    estimate: rel.reltuples >= 0 ? Math.round(rel.reltuples) : undefined,
    ...renderSql(table, columns.map((c) => c.name), mapping, keyTypes),
    ...placeholderSql(table, columns.map((c) => c.name), mapping, keyTypes),
  }
}

/**
 * A tenant mapping's placeholders (ReadPlan.placeholders), when every placeholder column is selected (exported for
 * tests).
 */
export function placeholderSql(
  table: string,
  columns: readonly string[],
  mapping: Pick<Mapping, 'idColumns' | 'namespaceTemplate'>,
  keyTypes: readonly string[],
): Pick<ReadPlan, 'placeholders'> {
  const template = mapping.namespaceTemplate
  if (!template) return {}
  const index = template.columns.map((c) => columns.indexOf(c))
  if (index.some((i) => i < 0)) return {}
  const names = template.columns.map((_, i) => `p${i}`)
  const k = mapping.idColumns.length
  const texts = names.map((_, i) => `$${k + i + 1}::text[]`)
  const page = pageKeys(mapping.idColumns, keyTypes, k + names.length + 1)
  const col = (name: string) => `${T}.${ident(name)}`
  // format('%s') prints a value with its type's output function, as COPY printed the page's (a bool is t, an inet
  // keeps no /32, a char(n) its padding; format gives '' for NULL, told apart here), compared byte for byte (COLLATE
  // "C": a column's nondeterministic collation would take 'Acme' for 'acme', two namespaces to the renderer)
  const differs = template.columns.map((c, i) =>
    `(${col(c)} IS NULL) <> (${K}.${names[i]} IS NULL) OR format('%s', ${col(c)}) COLLATE "C" <> ${K}.${names[i]}`
  )
  // a position once, whatever the rows of its key (a table without a unique index on the id columns)
  const movedSql = `SELECT DISTINCT ${K}.i::int AS i FROM unnest(${[...page.arrays, ...texts].join(', ')}) WITH ` +
    `ORDINALITY AS ${K}(${[...page.names, ...names].join(', ')}, i) JOIN ${table} AS ${T} ON ${page.match} ` +
    `WHERE ${differs.join(' OR ')}`
  return { placeholders: { index, movedSql } }
}

/**
 * A page's keys in a query (recheckSql, movedSql): `arrays`, the text[] parameters `$1..$k` of the key texts (one per
 * id column, unnested as `K(names…)`), and `match`, the condition that a row of `T` has such a key within the page's
 * range, whose first and last keys are the parameters from `$bounds` on.
 */
function pageKeys(idColumns: readonly string[], keyTypes: readonly string[], bounds: number) {
  const k = idColumns.length
  const keys = idColumns.map((name) => `${T}.${ident(name)}`)
  const keyRow = k === 1 ? keys[0] : `(${keys.join(', ')})`
  const names = idColumns.map((_, i) => `k${i}`)
  const arrays = idColumns.map((_, i) => `$${i + 1}::text[]`)
  const casted = names.map((n, i) => `${K}.${n}::${keyTypes[i]}`)
  // the page's first and last keys bound the lookups to its key range: PostgreSQL then reads that range once and
  // hashes it (a hash anti join) instead of one index lookup per key, less than half the work
  // sent as text and cast here: a parameter of the key's type would go through postgres.js's serializer for that
  // type, which does not take PostgreSQL's text ('t' is not true to it; a timestamp passes through a JS Date)
  const bound = (from: number) => {
    const ps = keyTypes.map((t, i) => `$${from + i}::text::${t}`)
    return k === 1 ? ps[0] : `(${ps.join(', ')})`
  }
  const range = `${keyRow} >= ${bound(bounds)} AND ${keyRow} <= ${bound(bounds + k)}`
  return { names, arrays, match: `${keyRow} = ${k === 1 ? casted[0] : `(${casted.join(', ')})`} AND ${range}` }
}

/**
 * The page after `after` (from the beginning when undefined) as `COPY (…) TO STDOUT`: the same rows in the same order
 * as the page queries. COPY takes no parameters, so the last key's texts become literals cast to the id columns'
 * types, which is what a parameter of that type is.
 */
export function copyPageSql(
  plan: Pick<ReadPlan, 'pageParts' | 'keyTypes'>,
  after: readonly string[] | undefined,
  limit: number,
  filter?: RowFilter,
): string {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`page size: expected a positive integer, got ${limit}`)
  const { keyRow, order } = plan.pageParts
  const select = filtered(plan.pageParts.select, filter)
  if (!after) return `COPY (${select} ${order} LIMIT ${limit}) TO STDOUT`
  const k = plan.keyTypes.length
  if (after.length !== k) throw new Error(`page key: expected ${k} values, got ${after.length}`)
  const literals = after.map((t, i) => `${quoteLiteral(t)}::${plan.keyTypes[i]}`)
  const bound = k === 1 ? literals[0] : `(${literals.join(', ')})`
  return `COPY (${select} AND ${keyRow} > ${bound} ${order} LIMIT ${limit}) TO STDOUT`
}

/** `n` member rows picked at random, as `COPY (…) TO STDOUT` (verify --sample). */
export function copySampleSql(plan: Pick<ReadPlan, 'pageParts'>, n: number, filter?: RowFilter): string {
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`sample size: expected a positive integer, got ${n}`)
  return `COPY (${filtered(plan.pageParts.select, filter)} ORDER BY random() LIMIT ${n}) TO STDOUT`
}

/** A page's SELECT (which ends in its WHERE conditions) with a filter's condition added. */
function filtered(select: string, filter: RowFilter | undefined): string {
  return filter ? `${select} AND (${filter.condition})` : select
}

/** The alias of the table in every query of a plan (a filter's condition names its columns through it). */
export const ROW_ALIAS = '__puffgres_t'
const T = ROW_ALIAS
const K = '__puffgres_k'

/** Renders the queries of a plan (exported for tests). */
export function renderSql(
  table: string,
  columns: readonly string[],
  mapping: Pick<Mapping, 'idColumns' | 'membership'>,
  keyTypes: readonly string[],
): Pick<ReadPlan, 'pageParts' | 'recheckSql' | 'nullIdSql'> {
  const col = (name: string) => `${T}.${ident(name)}`
  // qualified everywhere: in the re-check a bare name could be the key list's column
  const member = mapping.membership ? toSql(mapping.membership, col) : undefined
  const keys = mapping.idColumns.map(col)
  const keyRow = keys.length === 1 ? keys[0] : `(${keys.join(', ')})`
  const notNull = keys.map((k) => `${k} IS NOT NULL`).join(' AND ')
  const select = columns.map(col).join(', ')
  const base = `SELECT ${select} FROM ${table} AS ${T} WHERE ${notNull}${member ? ` AND ${member}` : ''}`
  const order = `ORDER BY ${keys.join(', ')}`
  const page = pageKeys(mapping.idColumns, keyTypes, mapping.idColumns.length + 1)
  const recheckSql = `SELECT ${K}.i::int AS i FROM unnest(${page.arrays.join(', ')}) WITH ORDINALITY AS ${K}(${
    page.names.join(', ')
  }, i) WHERE NOT EXISTS (SELECT 1 FROM ${table} AS ${T} WHERE ${page.match}${member ? ` AND ${member}` : ''})`
  return {
    pageParts: { select: base, keyRow, order },
    recheckSql,
    nullIdSql: `SELECT count(*)::float8 AS n FROM ${table} AS ${T} WHERE NOT (${notNull})${
      member ? ` AND ${member}` : ''
    }`,
  }
}
