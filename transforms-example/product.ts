// A product search index: one document per published product, with a computed `searchText` for full-text search.
// Migration: `transform = "transforms/product.ts"` (copy this file to your project's puffgres/transforms/).
// In a project, import the types from 'puffgres': `import type { Action, RowEvent } from 'puffgres'`.
import type { Action, RowEvent } from '../src/mod.ts'

/** PostgreSQL `numeric` arrives as a string (exact); turbopuffer wants a number for range filters. */
function toNumber(v: unknown): number | null {
  if (v === null || v === undefined || v === '') return null
  const n = typeof v === 'number' ? v : Number(v)
  return Number.isFinite(n) ? n : null
}

function words(...parts: unknown[]): string {
  return parts
    .flat()
    .filter((p) => p !== null && p !== undefined && p !== '')
    .map(String)
    .join(' ')
    .replace(/\s+/g, ' ')
    .trim()
    .toLowerCase()
}

export default function product(event: RowEvent): Action {
  if (event.type === 'delete') return { type: 'delete' }
  const p = event.new!
  if (p.status !== 'published') {
    // A new draft was never indexed: nothing to do. An update that unpublishes must remove the document that the
    // published version created; `skip` would leave it searchable. (A membership predicate does this for you:
    // see membership-plus-transform.ts.)
    return event.type === 'insert' ? { type: 'skip' } : { type: 'delete' }
  }
  const tags = Array.isArray(p.tags) ? p.tags.map(String) : []
  return {
    type: 'upsert',
    attributes: {
      name: p.name,
      brand: p.brand ?? null,
      category: p.category ?? null,
      price: toNumber(p.price),
      currency: p.currency ?? 'USD',
      in_stock: Number(p.stock ?? 0) > 0,
      tags,
      searchText: words(p.name, p.brand, p.category, tags, p.description),
    },
  }
}
