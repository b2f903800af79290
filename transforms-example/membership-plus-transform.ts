// Shapes documents only; which rows belong in the namespace is the migration's membership predicate:
//
//   [mapping]
//   id = "id"
//   membership = "status = 'published' AND deleted_at IS NULL"
//   transform = "transforms/membership-plus-transform.ts"
//
// puffgres evaluates the predicate before the transform runs: rows outside it never reach this function as
// upserts, and a row that leaves it (unpublished, soft-deleted) arrives as a `delete` event, answered with a delete
// of its document. So there is no status check here, and no `skip` that would leave a stale document behind.
import type { Action, RowEvent } from '../src/mod.ts'

const WORDS_PER_MINUTE = 200

export default function article(event: RowEvent): Action {
  if (event.type === 'delete') return { type: 'delete' }
  const row = event.new!
  const body = typeof row.body === 'string' ? row.body : ''
  const wordCount = body.split(/\s+/).filter(Boolean).length
  return {
    type: 'upsert',
    attributes: {
      title: row.title,
      author: row.author ?? null,
      word_count: wordCount,
      reading_minutes: Math.max(1, Math.ceil(wordCount / WORDS_PER_MINUTE)),
      published_at: row.published_at instanceof Date ? row.published_at.toISOString() : row.published_at ?? null,
    },
  }
}
