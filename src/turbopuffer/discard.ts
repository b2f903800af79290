// A sink that stores nothing, for benchmarks of everything upstream of turbopuffer.
import type { WriteOp } from '../types.ts'
import type { Sink, SinkStats, WriteOptions, WriteResult } from './types.ts'

export class DiscardSink implements Sink {
  #stats: SinkStats = { requests: 0, retries: 0, written: 0, skipped: 0, failed: 0 }

  write(_namespace: string, ops: WriteOp[], _opts?: WriteOptions): Promise<WriteResult> {
    this.#stats.requests++
    this.#stats.written += ops.length
    return Promise.resolve({ written: ops.length, skipped: 0, failed: [] })
  }

  deleteAllBefore(_namespace: string, _version: string): Promise<void> {
    this.#stats.requests++
    return Promise.resolve()
  }

  stats(): SinkStats {
    return { ...this.#stats }
  }
}
