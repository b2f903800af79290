// `verify --tenant <value>` (issue 24): the namespace of one tenant, the template filled from the flag's values with
// the writers' own function (pipeline/row-namespace.ts rowNamespace).
import type { Mapping } from '../config/load.ts'
import { placeholderValues } from '../config/row-documents.ts'
import { type PlanColumn, type RowFilter, textMatchFilter } from '../source/mod.ts'
import type { Row } from '../types.ts'
import { rowNamespace } from './row-namespace.ts'

/** The most ways of rendering one namespace a filter lists (each an OR of its condition); more: no filter. */
const MAX_RENDERINGS = 64

/**
 * `verify --tenant <value>`: the namespace of one tenant. One placeholder takes the value as is (`--tenant 7`);
 * several take `column=value` pairs separated by commas (`--tenant region=eu,org_id=7`), one for each placeholder.
 * Throws an Error naming the flag and what is wrong.
 */
export function tenantNamespace(m: Pick<Mapping, 'name' | 'namespace' | 'namespaceTemplate'>, text: string): string {
  const template = m.namespaceTemplate
  if (!template) {
    throw new Error(`--tenant: mapping ${m.name} has one namespace (${m.namespace}), not a namespace per tenant`)
  }
  const columns = template.columns
  const values: Row = {}
  if (columns.length === 1 && !text.startsWith(`${columns[0]}=`)) values[columns[0]] = text
  else {
    for (const pair of text.split(',')) {
      const eq = pair.indexOf('=')
      const column = pair.slice(0, eq).trim()
      if (eq < 1 || !columns.includes(column)) {
        throw new Error(
          `--tenant: "${pair}" is not column=value for a placeholder of "${template.text}" ` +
            `(e.g. --tenant ${columns.map((c, i) => `${c}=${i + 1}`).join(',')})`,
        )
      }
      values[column] = pair.slice(eq + 1)
    }
    const missing = columns.filter((c) => !(c in values))
    if (missing.length) {
      throw new Error(
        `--tenant: "${template.text}" needs a value for ${missing.join(', ')} (column=value, comma-separated)`,
      )
    }
  }
  const ns = rowNamespace(m, values)
  if (!ns.ok) throw new Error(`--tenant: ${ns.error}`)
  return ns.namespace
}

/**
 * The read filter of the rows whose namespace is `namespace` (`verify --tenant`): their placeholder columns compared
 * in SQL with the values that render it (every way of rendering it: `docs_{a}_{b}` renders `docs_x_y_z` two ways),
 * as source/row-filter.ts compares each column type. It may select more (a collation that is not deterministic):
 * the reader checks each row's namespace (rowNamespace) too. Undefined when SQL cannot select them (a placeholder
 * column whose values print otherwise, a float): every row is read, and checked.
 */
export function tenantFilter(
  m: Pick<Mapping, 'namespaceTemplate'>,
  columns: readonly PlanColumn[],
  namespace: string,
): RowFilter | undefined {
  if (!m.namespaceTemplate) return undefined
  const renderings = placeholderValues(m.namespaceTemplate, namespace, MAX_RENDERINGS)
  return renderings && textMatchFilter(columns, renderings)
}
