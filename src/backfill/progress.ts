// Backfill progress: a bar redrawn in place on a terminal, a log line every few seconds otherwise.
import type { Logger } from '../types.ts'

export interface ProgressOptions {
  mapping: string
  /** estimated rows of the table (pg_class.reltuples); undefined when unknown */
  total?: number
  /** rows already done before this run (resume) */
  startRows: number
  /** draw a bar with `write` (a terminal) instead of logging */
  tty: boolean
  write: (s: string) => void
  log: Logger
  /** between log lines off a terminal (default 5000) */
  logEveryMs?: number
  now?: () => number
}

export interface Progress {
  /** `rows`: total rows done so far, including those before a resume */
  update(rows: number): void
  /** removes the bar */
  stop(): void
}

export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

/** `42s`, `3m07s`, `2h05m` */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?'
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

/** One line of the bar, e.g. `[████████░░░░░░░░░░░░]  41%  412,000/1,000,000 rows  82,311 rows/s  ETA 7s`. */
export function formatBar(rows: number, total: number | undefined, rate: number, width = 24): string {
  const speed = `${formatCount(rate)} rows/s`
  if (!total) return `${formatCount(rows)} rows  ${speed}`
  const frac = Math.min(1, rows / total)
  const full = Math.round(frac * width)
  const bar = '█'.repeat(full) + '░'.repeat(width - full)
  const pct = `${Math.floor(frac * 100)}%`.padStart(4)
  // the estimate can be low: past it there is no meaningful ETA
  const eta = rows < total && rate > 0 ? `  ETA ${formatDuration((total - rows) / rate)}` : ''
  return `[${bar}] ${pct}  ${formatCount(rows)}/${formatCount(total)} rows  ${speed}${eta}`
}

export function createProgress(opts: ProgressOptions): Progress {
  const now = opts.now ?? Date.now
  const started = now()
  const logEvery = opts.logEveryMs ?? 5000
  let lastDraw = 0
  let drawn = false
  const rate = (rows: number) => {
    const s = (now() - started) / 1000
    return s > 0 ? (rows - opts.startRows) / s : 0
  }
  return {
    update(rows) {
      const t = now()
      if (opts.tty) {
        if (t - lastDraw < 100) return
        lastDraw = t
        drawn = true
        opts.write(`\r\x1b[2K${formatBar(rows, opts.total, rate(rows))}`)
      } else {
        if (t - (lastDraw || started) < logEvery) return
        lastDraw = t
        const r = rate(rows)
        opts.log.info('backfill progress', {
          mapping: opts.mapping,
          rows,
          total_estimate: opts.total,
          rows_per_s: Math.round(r),
          eta_s: opts.total && r > 0 && rows < opts.total ? Math.round((opts.total - rows) / r) : undefined,
        })
      }
    },
    stop() {
      if (drawn) opts.write('\r\x1b[2K')
      drawn = false
    },
  }
}
