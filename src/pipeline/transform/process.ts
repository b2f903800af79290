// `transform = "bin:<command line>"`: a transform in any language. One long-running child process reads one JSON
// RowEvent per line on stdin and writes one JSON action per line on stdout, in the same order; many lines may be in
// flight. If it dies or stops answering, the events in flight fail and it is restarted (with backoff) for the next
// ones; if it keeps dying without answering anything, run() rejects with a clear error. stderr goes to the logger.
import { type ChildProcess, spawn } from 'node:child_process'
import type { RowEvent } from '../../types.ts'
import { errorMessage, normalizeAction, type TransformResult } from './action.ts'
import { showId } from '../docid.ts'
import type { TransformRunner, TransformRunnerOptions } from './types.ts'
import { resolveProgram, specLabel, type TransformSpec } from './spec.ts'

type CommandSpec = Extract<TransformSpec, { kind: 'command' }>

interface InFlight {
  event: RowEvent
  done(r: TransformResult): void
}

const DEFAULT_TIMEOUT_MS = 30_000
const RESTART_BASE_MS = 200
const RESTART_MAX_MS = 5_000
const STDERR_KEPT = 5

/** JSON for one event: bigints as decimal strings, bytes as PostgreSQL's `\x…` hex text. */
function encodeEvent(event: RowEvent): string {
  return JSON.stringify(event, (_k, v) => {
    if (typeof v === 'bigint') return v.toString()
    if (v instanceof Uint8Array) return '\\x' + Array.from(v, (b) => b.toString(16).padStart(2, '0')).join('')
    return v
  })
}

/** A FIFO with O(1) shift. */
class Fifo<T> {
  #items: (T | undefined)[] = []
  #head = 0
  get length(): number {
    return this.#items.length - this.#head
  }
  push(v: T): void {
    this.#items.push(v)
  }
  peek(): T | undefined {
    return this.#items[this.#head]
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined
    const v = this.#items[this.#head]
    this.#items[this.#head++] = undefined
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return v
  }
  drain(): T[] {
    const out = this.#items.slice(this.#head) as T[]
    this.#items = []
    this.#head = 0
    return out
  }
}

export function createProcessRunner(spec: CommandSpec, opts: TransformRunnerOptions): TransformRunner {
  const label = `transform ${specLabel(spec)}`
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const maxFailures = opts.maxConsecutiveFailures ?? 5
  const program = resolveProgram(spec)
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(opts.env ?? process.env)) if (v !== undefined) env[k] = v
  const logFields = { mapping: opts.mapping, transform: specLabel(spec) }

  let child: ChildProcess | undefined
  let starting: Promise<ChildProcess> | undefined
  const inFlight = new Fifo<InFlight>()
  let stdoutBuf = ''
  let stderrBuf = ''
  const stderrTail: string[] = []
  /** deaths (and timeouts) since the last answered line */
  let failures = 0
  let lastFailure = ''
  /** when the current head of the queue started waiting: written, or the previous line answered */
  let headSince = 0
  let watchdog: ReturnType<typeof setInterval> | undefined
  let closed = false

  const idOf = (e: RowEvent) => showId(e.id)

  function stderrHint(): string {
    const last = stderrTail[stderrTail.length - 1]
    return last ? ` (stderr: ${last})` : ''
  }

  function onLine(line: string): void {
    if (line.trim() === '') return
    const head = inFlight.shift()
    if (!head) {
      opts.log.warn('transform process wrote a line nobody asked for', { ...logFields, line: line.slice(0, 200) })
      return
    }
    failures = 0
    headSince = Date.now()
    if (inFlight.length === 0) stopWatchdog()
    let parsed: unknown
    try {
      parsed = JSON.parse(line)
    } catch {
      head.done({
        ok: false,
        error: `${label} wrote a line that is not JSON for id ${idOf(head.event)}: ${line.slice(0, 200)}`,
      })
      return
    }
    head.done(normalizeAction(parsed, head.event, label))
  }

  function onStdout(chunk: string): void {
    stdoutBuf += chunk
    let start = 0
    let nl: number
    while ((nl = stdoutBuf.indexOf('\n', start)) >= 0) {
      onLine(stdoutBuf.slice(start, nl))
      start = nl + 1
    }
    stdoutBuf = start === 0 ? stdoutBuf : stdoutBuf.slice(start)
  }

  function onStderr(chunk: string): void {
    stderrBuf += chunk
    let nl: number
    while ((nl = stderrBuf.indexOf('\n')) >= 0) {
      const line = stderrBuf.slice(0, nl).replace(/\r$/, '').slice(0, 2000)
      stderrBuf = stderrBuf.slice(nl + 1)
      if (line.trim() === '') continue
      stderrTail.push(line)
      if (stderrTail.length > STDERR_KEPT) stderrTail.shift()
      opts.log.info('transform stderr', { ...logFields, line })
    }
  }

  /** Forgets the current process (killing it if alive) and fails what it had in flight. */
  function detach(proc: ChildProcess, reason: (head: RowEvent, i: number) => string): void {
    if (child !== proc) return
    child = undefined
    stdoutBuf = ''
    stopWatchdog()
    const lost = inFlight.drain()
    for (let i = 0; i < lost.length; i++) lost[i].done({ ok: false, error: reason(lost[i].event, i) })
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  }

  function checkTimeout(): void {
    const proc = child
    const head = inFlight.peek()
    if (!proc || !head || Date.now() - headSince < timeoutMs) return
    failures++
    lastFailure = `no answer within ${timeoutMs} ms for id ${idOf(head.event)}`
    opts.log.warn('transform process timed out; restarting it', { ...logFields, id: head.event.id })
    const headId = idOf(head.event)
    detach(
      proc,
      (e, i) =>
        i === 0
          ? `${label} timed out after ${timeoutMs} ms for id ${idOf(e)}`
          : `${label} was restarted because id ${headId} timed out, while id ${idOf(e)} was in flight`,
    )
  }

  function stopWatchdog(): void {
    if (watchdog !== undefined) clearInterval(watchdog)
    watchdog = undefined
  }

  function startWatchdog(): void {
    if (watchdog !== undefined) return
    watchdog = setInterval(checkTimeout, Math.max(10, Math.min(1000, timeoutMs / 4)))
  }

  function start(): Promise<ChildProcess> {
    return new Promise((resolve, reject) => {
      let proc: ChildProcess
      try {
        proc = spawn(program, spec.argv.slice(1), { cwd: spec.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] })
      } catch (err) {
        reject(new Error(`${label} could not be started: ${errorMessage(err)}`))
        return
      }
      let started = false
      proc.once('spawn', () => {
        started = true
        stderrTail.length = 0
        stdoutBuf = ''
        stderrBuf = ''
        child = proc
        resolve(proc)
      })
      proc.on('error', (err) => {
        // before 'spawn': the program could not be executed at all, which restarting will not fix
        if (!started) reject(new Error(`${label} could not be started (${program}): ${errorMessage(err)}`))
        else opts.log.warn('transform process error', { ...logFields, error: errorMessage(err) })
      })
      proc.stdin!.on('error', () => {/* EPIPE after the process died: its 'close' reports the failure */})
      proc.stdout!.setEncoding('utf8').on('data', (c: string) => {
        if (child === proc) onStdout(c)
      })
      proc.stderr!.setEncoding('utf8').on('data', onStderr)
      proc.on('close', (code, signal) => {
        if (child !== proc) return
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`
        failures++
        lastFailure = `${how}${stderrHint()}`
        if (!closed) opts.log.warn('transform process stopped; it will be restarted', { ...logFields, how })
        detach(
          proc,
          (e) =>
            closed
              ? `${label} was closed while id ${idOf(e)} was in flight`
              : `${label} ${how} while id ${idOf(e)} was in flight${stderrHint()}`,
        )
      })
    })
  }

  async function ensureChild(): Promise<ChildProcess> {
    if (child) return child
    if (starting) return starting
    if (failures >= maxFailures) {
      const n = failures
      failures = 0 // a later run() starts over, with backoff
      throw new Error(`${label} keeps failing: ${n} times in a row without answering; last: ${lastFailure}`)
    }
    const delay = failures === 0 ? 0 : Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** (failures - 1))
    starting = (async () => {
      if (delay > 0) await new Promise((r) => setTimeout(r, delay))
      return start()
    })()
    try {
      return await starting
    } finally {
      starting = undefined
    }
  }

  return {
    label,
    async run(events: RowEvent[]): Promise<TransformResult[]> {
      if (closed) throw new Error(`${label}: run() after close()`)
      if (events.length === 0) return []
      const proc = await ensureChild()
      const wasIdle = inFlight.length === 0
      const results = new Array<Promise<TransformResult>>(events.length)
      const lines: string[] = new Array(events.length)
      for (let i = 0; i < events.length; i++) {
        const event = events[i]
        try {
          lines[i] = encodeEvent(event)
        } catch (err) {
          results[i] = Promise.resolve({
            ok: false,
            error: `${label}: id ${idOf(event)} cannot be sent as JSON: ${errorMessage(err)}`,
          })
          continue
        }
        results[i] = new Promise((done) => inFlight.push({ event, done }))
      }
      const payload = lines.filter((l) => l !== undefined)
      if (payload.length > 0) {
        if (wasIdle) headSince = Date.now()
        startWatchdog()
        proc.stdin!.write(payload.join('\n') + '\n')
      }
      return Promise.all(results)
    },
    async close(): Promise<void> {
      closed = true
      stopWatchdog()
      const proc = child ?? (starting ? await starting.catch(() => undefined) : undefined)
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
      const exited = new Promise<void>((r) => proc.once('close', () => r()))
      const wait = (ms: number) =>
        Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))])
      proc.stdin!.end()
      if (await wait(2000)) return
      proc.kill('SIGTERM')
      if (await wait(2000)) return
      proc.kill('SIGKILL')
      await exited
    },
  }
}
