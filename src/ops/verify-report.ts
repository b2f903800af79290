// The drift report of `puffgres verify` (ops/verify.ts): its fields, and the text the command prints.
import type { Id } from '../types.ts'

export interface Mismatch {
  id: Id
  /** attributes whose values differ, are missing or are extra */
  attributes: string[]
}

export interface Misplaced {
  id: Id
  /** where the document is */
  namespace: string
  /** where its row's documents belong now */
  belongs: string
}

export interface DriftReport {
  mapping: string
  namespace: string
  /** the sample size, or null for a full check */
  sample: number | null
  /** the LSN the rows were read after */
  lsn: string
  /** member rows read */
  rows: number
  /** documents the projection expects */
  expected: number
  /** documents read from the namespace */
  documents: number
  matching: number
  missing: { count: number; ids: Id[] }
  extra: { count: number; ids: Id[] }
  mismatched: { count: number; items: Mismatch[] }
  /** rows the transform rejected or that could not be decoded (see the DLQ); their documents are not judged */
  failed: { count: number; ids: string[] }
  /** documents with a version newer than the read (changed while verify ran): not judged */
  changed_during_verify: number
  /**
   * a tenant mapping (a namespace template): the namespaces compared (every one of the mapping, or one with
   * `--tenant`), and those of them no row routes to any more (kept; their documents are extra or misplaced)
   */
  namespaces?: { checked: number; unrouted: { count: number; names: string[] } }
  /**
   * `--tenant`: how its rows were read. `rows`: "selected", PostgreSQL selected them (the placeholder columns compared
   * in the query), or "all read", every member row read and the other tenants' left out as read (a placeholder
   * column whose values print otherwise, a float). `looked_up`: rows read by key, those of documents found in the
   * namespace that its rows do not make (to tell a misplaced copy from an extra document); `scanned`: rows read
   * again for such documents no key found (a transform names the documents), 0 unless needed.
   */
  tenant?: { rows: 'selected' | 'all read'; looked_up: number; scanned: number }
  /** a tenant mapping: documents in another namespace than their row's (the stale copy of a row that moved) */
  misplaced?: { count: number; items: Misplaced[] }
  drift: boolean
  repair?: { lsn: string; upserted: number; deleted: number; skipped: number; failed: number }
}

export function diffAttributes(want: Record<string, string>, got: Record<string, string>): string[] {
  const names = new Set([...Object.keys(want), ...Object.keys(got)])
  return [...names].filter((k) => want[k] !== got[k]).sort()
}

function formatIds(ids: Id[], count: number): string {
  const shown = ids.map((id) => JSON.stringify(id)).join(', ')
  return count > ids.length ? `${shown}, … (${count - ids.length} more)` : shown
}

/** The human drift report. */
export function formatDriftReport(r: DriftReport): string {
  const lines = [
    `verify ${r.mapping} → ${r.namespaces ? 'namespaces' : 'namespace'} ${r.namespace}${
      r.sample === null ? '' : ` (sample of ${r.sample} rows)`
    }`,
    `  rows read ${r.rows} (after LSN ${r.lsn}), documents expected ${r.expected}, documents read ${r.documents}`,
    `  matching      ${r.matching}`,
    `  missing       ${r.missing.count}${r.missing.count ? `: ${formatIds(r.missing.ids, r.missing.count)}` : ''}`,
    `  extra         ${r.extra.count}${r.extra.count ? `: ${formatIds(r.extra.ids, r.extra.count)}` : ''}`,
    `  mismatched    ${r.mismatched.count}`,
    ...r.mismatched.items.map((m) => `    ${JSON.stringify(m.id)}: ${m.attributes.join(', ')}`),
  ]
  if (r.misplaced) {
    lines.push(`  misplaced     ${r.misplaced.count}${r.misplaced.count ? ' (a stale copy in another tenant)' : ''}`)
    for (const m of r.misplaced.items) {
      lines.push(`    ${JSON.stringify(m.id)} in ${m.namespace}, belongs in ${m.belongs}`)
    }
    if (r.misplaced.count > r.misplaced.items.length) {
      lines.push(`    … (${r.misplaced.count - r.misplaced.items.length} more)`)
    }
  }
  if (r.namespaces) {
    const u = r.namespaces.unrouted
    lines.push(`  namespaces    ${r.namespaces.checked} checked`)
    if (u.count) {
      const more = u.count > u.names.length ? `, … (${u.count - u.names.length} more)` : ''
      lines.push(
        `  no row routes to ${u.count} of them (kept; documents there are extra): ${u.names.join(', ')}${more}`,
      )
    }
  }
  if (r.mismatched.count > r.mismatched.items.length) {
    lines.push(`    … (${r.mismatched.count - r.mismatched.items.length} more)`)
  }
  if (r.tenant) {
    const t = r.tenant
    const rows = t.rows === 'selected'
      ? 'its rows selected by PostgreSQL'
      : 'every row read, its rows kept (PostgreSQL cannot compare a placeholder column of this type)'
    const scanned = t.scanned ? `, ${t.scanned} read to place documents a transform named` : ''
    lines.push(`  tenant        ${rows}; ${t.looked_up} other row(s) looked up by key${scanned}`)
  }
  if (r.failed.count) {
    lines.push(
      `  not judged    ${r.failed.count} (transform failed or row unreadable; see puffgres dlq list): ${
        r.failed.ids.join(', ')
      }`,
    )
  }
  if (r.changed_during_verify) lines.push(`  changed while verifying (not judged) ${r.changed_during_verify}`)
  if (r.sample !== null) lines.push('  (a sample does not look for extra documents)')
  lines.push(r.drift ? '  DRIFT' : '  in sync')
  if (r.repair) {
    lines.push(
      `  repaired at ${r.repair.lsn}: ${r.repair.upserted} upserted, ${r.repair.deleted} deleted, ` +
        `${r.repair.skipped} skipped (a newer version is there), ${r.repair.failed} failed`,
    )
  }
  return lines.join('\n')
}
