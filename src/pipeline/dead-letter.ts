// The one constructor of a row's dead letter, for every path a row takes (the stream's decode, backfill's pages,
// re-reads, the writer, `dlq retry`, `verify --repair`): the document id and the key texts come from one row key, so
// `dlq retry` finds the row again exactly and a replay of the same row updates its entry instead of filing a second
// one (docs/ARCHITECTURE.md, invariant 12).
import type { DeadLetter } from '../postgres/dlq.ts'
import type { Id } from '../types.ts'
import { keyIdText, type RowKey } from './row-key.ts'

/**
 * The dead letter of one row: `event` as the transform would have seen it, with the key texts that find the row
 * (`key_texts`, when PostgreSQL printed them). `id`: the document id the entry names, when not the key's (a
 * transform that named another document).
 */
export function deadLetter(
  mapping: string,
  lsn: bigint,
  key: RowKey | undefined,
  event: object,
  error: string,
  id: Id | undefined = key?.id,
): DeadLetter {
  return {
    mapping,
    docId: key ? keyIdText({ texts: key.texts, id }) : id === undefined ? undefined : String(id),
    lsn,
    event: key?.printed ? { ...event, key_texts: key.texts } : event,
    error,
  }
}
