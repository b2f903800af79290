// `puffgres dlq`: list, show, retry and clear the rows in the dead-letter queue (__puffgres_dlq).
import { table } from '../ops/status.ts'
import { sinkFromConfig } from '../turbopuffer/from-config.ts'
import { CliError } from '../errors.ts'
import { parseFlags, positiveInt, UsageError } from './flags.ts'
import type { Config } from '../config/load.ts'
import { createLogger } from '../log.ts'
import { retryDeadLetters } from '../ops/dlq-retry.ts'
import { findMapping } from '../ops/mapping-runtime.ts'
import { connect } from '../postgres/connect.ts'
import { deleteDeadLetters, type DlqEntry, getDeadLetter, listDeadLetters } from '../postgres/dlq.ts'
import { existingStateTables } from '../postgres/state.ts'

export const help = `puffgres dlq <list|show|retry|clear> [options]

The dead-letter queue holds rows a transform rejected or turbopuffer refused for good, with the event, the error,
the attempt count, the first and last failure times and the LSN.

  puffgres dlq list [--mapping <M>] [--limit <N>] [--json]
      entries, oldest first (default limit 100)
  puffgres dlq show <ID> [--json]
      one entry with its full error and event
  puffgres dlq retry --id <ID> | --mapping <M>
      re-runs transform + write against the row's CURRENT state in PostgreSQL (upsert if it exists and belongs to
      the mapping, else delete), versioned so that it never overwrites a newer document; an entry is removed only
      when its write succeeds and the row did not fail again meanwhile, otherwise its attempt count and error are
      updated. Exit 1 if any retry failed.
  puffgres dlq clear --id <ID> | --mapping <M> | --all
      removes entries without retrying them
`

function checkId(id: string): string {
  if (!/^[0-9]{1,18}$/.test(id)) {
    throw new UsageError(`dlq: "${id}" is not an entry id (a number, see puffgres dlq list)`)
  }
  return id
}

function oneLine(s: string, max: number): string {
  const flat = s.replace(/\s+/g, ' ').trim()
  return flat.length > max ? flat.slice(0, max - 1) + '…' : flat
}

const iso = (d: Date) => new Date(d).toISOString()

function entryJson(e: DlqEntry) {
  return {
    id: Number(e.id),
    mapping: e.mapping,
    doc_id: e.doc_id,
    lsn: e.lsn,
    attempts: e.attempts,
    first_failed_at: iso(e.first_failed_at),
    last_failed_at: iso(e.last_failed_at),
    error: e.error,
    event: e.event,
  }
}

function formatList(entries: DlqEntry[]): string {
  if (!entries.length) return 'the dead-letter queue is empty'
  const header = ['ID', 'MAPPING', 'DOC ID', 'ATTEMPTS', 'LAST FAILED', 'LSN', 'ERROR']
  const rows = entries.map((e) => [
    e.id,
    e.mapping,
    e.doc_id ?? '-',
    String(e.attempts),
    iso(e.last_failed_at).replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    e.lsn ?? '-',
    oneLine(e.error, 80),
  ])
  return table(header, rows)
}

function formatEntry(e: DlqEntry): string {
  return [
    `id:              ${e.id}`,
    `mapping:         ${e.mapping}`,
    `doc id:          ${e.doc_id ?? '-'}`,
    `lsn:             ${e.lsn ?? '-'}`,
    `attempts:        ${e.attempts}`,
    `first failed at: ${iso(e.first_failed_at)}`,
    `last failed at:  ${iso(e.last_failed_at)}`,
    `error:           ${e.error}`,
    `event:`,
    JSON.stringify(e.event, null, 2),
  ].join('\n')
}

export async function dlqCommand(argv: string[], config: () => Config): Promise<number> {
  const [sub, ...rest] = argv
  const subs = ['list', 'show', 'retry', 'clear']
  if (!sub || !subs.includes(sub)) {
    throw new CliError(
      `dlq: expected one of ${subs.join(', ')}${sub ? `, got "${sub}"` : ''} (see puffgres dlq --help)`,
      2,
    )
  }
  const { values, positionals } = parseFlags(rest, {
    mapping: { type: 'string' },
    limit: { type: 'string' },
    id: { type: 'string' },
    all: { type: 'boolean' },
    json: { type: 'boolean' },
  }, { allowPositionals: sub === 'show' })
  const limit = positiveInt(values.limit, '--limit', 100)
  if (values.id !== undefined) checkId(values.id)
  const cfg = config()
  const sql = connect(cfg.postgres.connectionString, { max: 2, application: 'puffgres dlq' })
  try {
    if (!(await existingStateTables(sql)).includes('__puffgres_dlq')) {
      throw new CliError('__puffgres_dlq does not exist in this database (run puffgres migrate first)', 1)
    }
    switch (sub) {
      case 'list': {
        const entries = await listDeadLetters(sql, { mapping: values.mapping, limit })
        console.log(values.json ? JSON.stringify(entries.map(entryJson), null, 2) : formatList(entries))
        return 0
      }
      case 'show': {
        if (positionals.length !== 1) {
          throw new CliError('dlq show: expected one entry id, e.g. puffgres dlq show 12', 2)
        }
        const e = await getDeadLetter(sql, checkId(positionals[0]))
        if (!e) {
          throw new CliError(`dlq: no entry ${positionals[0]}`, 1)
        }
        console.log(values.json ? JSON.stringify(entryJson(e), null, 2) : formatEntry(e))
        return 0
      }
      case 'clear': {
        const chosen = [values.id !== undefined, values.mapping !== undefined, !!values.all].filter(Boolean).length
        if (chosen !== 1) {
          throw new CliError('dlq clear: give exactly one of --id <ID>, --mapping <M>, --all', 2)
        }
        const n = await deleteDeadLetters(
          sql,
          values.id !== undefined ? { id: values.id } : values.mapping !== undefined ? { mapping: values.mapping } : {
            all: true,
          },
        )
        if (values.id !== undefined && n === 0) {
          throw new CliError(`dlq: no entry ${values.id}`, 1)
        }
        console.log(`removed ${n} ${n === 1 ? 'entry' : 'entries'}`)
        return 0
      }
      case 'retry': {
        if ((values.id === undefined) === (values.mapping === undefined)) {
          throw new CliError('dlq retry: give exactly one of --id <ID>, --mapping <M>', 2)
        }
        let entries: DlqEntry[]
        if (values.id !== undefined) {
          const e = await getDeadLetter(sql, values.id)
          if (!e) {
            throw new CliError(`dlq: no entry ${values.id}`, 1)
          }
          entries = [e]
        } else {
          findMapping(cfg, values.mapping!)
          entries = await listDeadLetters(sql, { mapping: values.mapping, limit: Number.MAX_SAFE_INTEGER })
        }
        const log = createLogger()
        const sink = sinkFromConfig(
          cfg.turbopuffer,
          { log },
        )
        const results = await retryDeadLetters(cfg, sql, sink, entries, log)
        for (const r of results) {
          const what = `${r.id} (${r.mapping} id ${r.doc_id ?? '-'})`
          console.log(r.ok ? `retried ${what}: ${r.action}` : `failed  ${what}: ${oneLine(r.error ?? '', 200)}`)
        }
        const failed = results.filter((r) => !r.ok).length
        console.log(`${results.length - failed} retried, ${failed} failed`)
        return failed ? 1 : 0
      }
    }
    return 2
  } finally {
    await sql.end({ timeout: 2 })
  }
}
