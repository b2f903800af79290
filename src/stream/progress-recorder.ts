// Per-mapping progress (for `puffgres status`) recorded with one statement in flight at a time: what batches report
// while it runs is merged into the next one, so many small batches (group commit) cost few round trips. The table
// only reports; the stream's checkpoint is the slot (so a failed recording is logged and retried with the next).
import type postgres from 'postgres'
import { type MappingProgress, recordProgress } from '../postgres/progress.ts'
import type { Logger } from '../types.ts'

export class ProgressRecorder {
  #pending = new Map<string, MappingProgress>()
  #running: Promise<void> | undefined

  constructor(private readonly sql: postgres.Sql, private readonly log: Logger) {}

  add(progress: MappingProgress[]): void {
    for (const p of progress) {
      const q = this.#pending.get(p.mapping)
      if (!q) this.#pending.set(p.mapping, { ...p })
      else {
        q.upserted += p.upserted
        q.deleted += p.deleted
        if (p.lsn > q.lsn) q.lsn = p.lsn
      }
    }
    this.#running ??= this.#run()
  }

  /** Resolves once everything added so far is recorded (or failed to be). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running
  }

  async #run(): Promise<void> {
    try {
      while (this.#pending.size) {
        const batch = [...this.#pending.values()]
        this.#pending = new Map()
        try {
          await recordProgress(this.sql, batch)
        } catch (e) {
          this.log.warn('recording progress for status failed; it is retried with the next batch', {
            error: (e as Error).message,
          })
          // keep the counts for the next attempt, but do not loop on a database that is down
          for (const p of batch) if (!this.#pending.has(p.mapping)) this.#pending.set(p.mapping, p)
          return
        }
      }
    } finally {
      this.#running = undefined
    }
  }
}
