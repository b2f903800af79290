// A read plan's filter for the rows whose columns' decoded values print as given texts (`verify --tenant`: the rows
// whose placeholder columns render one tenant's namespace). A decoded value prints as a string itself, an integer in
// decimal (config/row-documents.ts renderNamespace); each column type gets the SQL that selects exactly the rows
// whose value prints so, index-friendly where the type allows (`col = $v::int8`). A type whose decoded values print
// otherwise (a float, a timestamp, json) has no SQL: the filter leaves that column to the caller, which checks what it
// reads.
import { ident } from '../postgres/connect.ts'
import { FIRST_NON_BUILTIN_OID, OID, resolveTypeOid } from '../postgres/type-oids.ts'
import { decodesAsItsText } from '../postgres/values.ts'
import { filterSetting, type PlanColumn, ROW_ALIAS, type RowFilter } from './read-plan.ts'

const INT8_MIN = -(2n ** 63n)
const INT8_MAX = 2n ** 63n - 1n
const OID_MAX = 2n ** 32n - 1n
/** an integer as PostgreSQL and String() print it: no sign on 0, no leading zeros */
const DECIMAL = /^(0|-?[1-9][0-9]*)$/
/** a uuid as PostgreSQL prints it (uuid_out) */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * A filter for the rows whose columns print as one of `alternatives` (each: column → text; every column of one
 * alternative must match). Undefined when SQL cannot select them (an alternative whose every column has a type the
 * filter cannot compare): the caller reads every row and checks each. Otherwise the rows it selects include every
 * such row; the caller still checks each row it reads (a collation that is not deterministic compares 'A' = 'a').
 * `condition` is FALSE when no row can print so (`07` is no integer's text).
 */
export function textMatchFilter(
  columns: readonly PlanColumn[],
  alternatives: readonly Record<string, string>[],
): RowFilter | undefined {
  const values: string[] = []
  const param = (text: string) => {
    let i = values.indexOf(text)
    if (i < 0) i = values.push(text) - 1
    return `current_setting('${filterSetting(i)}')`
  }
  const ors: string[] = []
  for (const alternative of alternatives) {
    const ands: Bound[] = []
    let possible = true
    for (const [name, text] of Object.entries(alternative)) {
      const column = columns.find((c) => c.name === name)
      const sql = column && printsAs(column, `${ROW_ALIAS}.${ident(name)}`, text)
      if (sql === false) possible = false
      else if (sql !== undefined) ands.push(sql)
    }
    if (!possible) continue
    if (ands.length === 0) return undefined
    const conditions = ands.map((sql) => sql(param))
    ors.push(conditions.length === 1 ? conditions[0] : `(${conditions.join(' AND ')})`)
  }
  if (ors.length === 0) return { condition: 'FALSE', values: [] }
  return { condition: ors.join(' OR '), values }
}

/** SQL given the SQL that reads a bound text */
type Bound = (param: (text: string) => string) => string

/**
 * The SQL true for the rows whose `column` decodes to a value that prints as `text`; false when no value of its type
 * does; undefined when SQL cannot tell.
 */
function printsAs(column: PlanColumn, ref: string, text: string): Bound | false | undefined {
  const builtin = column.typeOid < FIRST_NON_BUILTIN_OID
  const type = resolveTypeOid(column.typeOid, column.typeName)
  const integer = type === OID.int2 || type === OID.int4 || type === OID.int8 || type === OID.oid
  if (builtin) {
    // the column compared as it is: an index on it serves (a cast of the column would not)
    switch (type) {
      case OID.text:
      case OID.varchar:
        return (param) => `${ref} = ${param(text)}`
      case OID.bpchar:
        // decoded without its padding, which bpchar's = ignores
        return (param) => `${ref} = ${param(text)}::bpchar`
      case OID.uuid:
        return UUID.test(text) && ((param) => `${ref} = ${param(text)}::uuid`)
      case OID.int2:
      case OID.int4:
      case OID.int8: {
        if (!DECIMAL.test(text) || BigInt(text) < INT8_MIN || BigInt(text) > INT8_MAX) return false
        return (param) => `${ref} = ${param(text)}::int8`
      }
      case OID.oid:
        if (!DECIMAL.test(text) || text.startsWith('-') || BigInt(text) > OID_MAX) return false
        return (param) => `${ref} = ${param(text)}::oid`
    }
  }
  // the type's own output function (COPY's, and the stream's): exactly the text decoded; a domain over an integer
  // prints as the integer does. No cast of the text to a type that may refuse it.
  if (decodesAsItsText(column.typeOid, column.typeName) || integer) {
    return (param) => `format('%s', ${ref}) = ${param(text)}`
  }
  return undefined
}
