// The one constructor of a row's dead letter, for every path a row takes (the stream's decode, backfill's pages,
// re-reads, the writer, `dlq retry`, `verify --repair`): the document id and the key texts come from one row key, so
// `dlq retry` finds the row again exactly and a replay of the same row updates its entry instead of filing a second
// one (docs/ARCHITECTURE.md, invariant 12).
import type { DeadLetter } from '../postgres/dlq.ts'
import type { Id } from '../types.ts'

/**
 * A row's key: its id columns as PostgreSQL printed them (when kept: they find the row exactly, where a decoded
 * timestamp has lost its microseconds), and the document id derived from them (when the row has one).
 */
export interface RowKey {
  texts?: readonly (string | null)[]
  id?: Id
}

/**
 * The document id text of key texts, for a row that has no turbopuffer id (a negative integer): the texts joined
 * with `:` and escaped as docId escapes a composite key, so the entry of one row is one entry whichever path filed it.
 */
export function keyIdText(texts: readonly (string | null)[]): string | undefined {
  if (texts.some((t) => t === null)) return undefined
  if (texts.length === 1) return texts[0]!
  return texts.map((t) => t!.replaceAll('\\', '\\\\').replaceAll(':', '\\:')).join(':')
}

/** The dead letter of one row: `event` as the transform would have seen it, with the key texts that find the row. */
export function deadLetter(
  mapping: string,
  lsn: bigint,
  key: RowKey | undefined,
  event: object,
  error: string,
): DeadLetter {
  const docId = key?.id !== undefined ? String(key.id) : key?.texts && keyIdText(key.texts)
  return {
    mapping,
    docId,
    lsn,
    event: key?.texts ? { ...event, key_texts: key.texts } : event,
    error,
  }
}
