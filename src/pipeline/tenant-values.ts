// From a tenant namespace back to the row values that render it, and `--tenant` values to a namespace (issue 24).
// A delete aimed at one tenant's namespace (backfill's re-check of a row gone since its page was read, `verify
// --repair` of a stale copy in the wrong tenant) goes through the one write path, which places a delete by the row's
// old values (pipeline/row-namespace.ts rowNamespace): giving the delete the placeholder values of that namespace
// places it there.
import type { Mapping } from '../config/load.ts'
import type { NamespaceTemplate } from '../config/row-documents.ts'
import type { Row } from '../types.ts'
import { rowNamespace } from './row-namespace.ts'

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')

/**
 * Values of the template's placeholder columns (as text) that render `namespace`, or undefined when the template
 * cannot render it. With several placeholders a name may split more than one way ("{region}_{org}" and "eu_west_7");
 * any split renders the same name, which is all a delete aimed at the namespace needs.
 */
export function placeholderValues(template: NamespaceTemplate, namespace: string): Row | undefined {
  const body = template.parts.map((p) => 'literal' in p ? escape(p.literal) : '([A-Za-z0-9_.-]+?)').join('')
  const match = new RegExp(`^${body}$`).exec(namespace)
  if (!match) return undefined
  const values: Row = {}
  let g = 1
  for (const p of template.parts) {
    if ('column' in p) values[p.column] = match[g++]
  }
  // a column named twice ("{a}_x_{a}") must have split the same way both times
  const again = rowNamespace({ name: '', namespace: template.text, namespaceTemplate: template }, values)
  return again.ok && again.namespace === namespace ? values : undefined
}

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
