// Batch form: the whole batch arrives in one call, so all its texts are embedded with one ctx.embed call (one
// provider request per `batch_size` texts; unchanged texts come from the cache). Needs [providers.embeddings].
// Migration: `transform = "transforms/batch-embeddings.ts"`.
import type { Action, RowEvent, TransformContext } from '../src/mod.ts'

// tells puffgres that the default export takes every event of a batch and returns one action per event, in order
export const batch = true

function textOf(row: Record<string, unknown>): string {
  return [row.title, row.body].filter((t) => typeof t === 'string' && t.trim() !== '').join('\n\n')
}

export default async function embedBatch(events: RowEvent[], ctx: TransformContext): Promise<Action[]> {
  const actions: Action[] = events.map(() => ({ type: 'skip' }))
  const toEmbed: { index: number; text: string }[] = []
  events.forEach((event, index) => {
    if (event.type === 'delete') {
      actions[index] = { type: 'delete' }
      return
    }
    const text = textOf(event.new!)
    if (text === '') {
      // nothing to embed: index the document without a vector rather than asking for the vector of ''
      actions[index] = { type: 'upsert', attributes: { title: event.new!.title ?? null } }
      return
    }
    toEmbed.push({ index, text })
  })
  if (toEmbed.length > 0) {
    const vectors = await ctx.embed(toEmbed.map((t) => t.text))
    toEmbed.forEach(({ index, text }, k) => {
      const row = events[index].new!
      actions[index] = {
        type: 'upsert',
        attributes: { title: row.title ?? null, chars: text.length },
        vector: vectors[k],
        distance_metric: 'cosine_distance',
      }
    })
  }
  ctx.log.debug('embedded a batch', { mapping: ctx.mapping, rows: events.length, texts: toEmbed.length })
  return actions
}
