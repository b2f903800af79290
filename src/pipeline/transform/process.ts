// `transform = "bin:<command line>"`: a transform in any language. One long-running child process reads one JSON
// RowEvent per line on stdin and writes one JSON action per line on stdout; many lines may be in flight. Each event
// line carries a `seq` number; an answer that carries `seq` answers that event (in any order), one without it answers
// the oldest event still unanswered. A line that is not an answer (not a JSON object with `type`, `op` or `seq`, or a
// `seq` nobody asked for) is a protocol error: the process is restarted and the events in flight are sent again, so
// a stray line never shifts answers onto the wrong rows (README, "Transforms"). If it dies or stops answering, the
// events in flight fail and it is restarted (with backoff) for the next ones; if it keeps failing without answering
// anything, run() rejects with a clear error. stderr goes to the logger.
import { type ChildProcess, spawn } from 'node:child_process'
import type { RowEvent } from '../../types.ts'
import { errorMessage, normalizeAction, type TransformResult } from './action.ts'
import { showId } from '../docid.ts'
import type { TransformRunner, TransformRunnerOptions } from './types.ts'
import { resolveProgram, specLabel, type TransformSpec } from '../../config/transform-spec.ts'
import { backoffDelay, sleep } from '../../retry.ts'

type CommandSpec = Extract<TransformSpec, { kind: 'command' }>

interface InFlight {
  event: RowEvent
  /** the event's JSON without `seq` (each sending adds its own) */
  json: string
  /** how many times a line that was not an answer came while this event was the oldest in flight */
  strays: number
  done(r: TransformResult): void
}

const DEFAULT_TIMEOUT_MS = 30_000
const RESTART_BASE_MS = 200
const RESTART_MAX_MS = 5_000
const STDERR_KEPT = 5
/** an event sent again this many times after lines that were not answers fails (the others go on) */
const STRAY_RETRIES = 2

/** JSON for one event: bigints as decimal strings, bytes as PostgreSQL's `\x…` hex text. */
function encodeEvent(event: RowEvent): string {
  return JSON.stringify(event, (_k, v) => {
    if (typeof v === 'bigint') return v.toString()
    if (v instanceof Uint8Array) return '\\x' + Array.from(v, (b) => b.toString(16).padStart(2, '0')).join('')
    return v
  })
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
  /** events sent and not answered, by seq, in the order they were sent */
  const inFlight = new Map<number, InFlight>()
  let nextSeq = 1
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

  /** the event sent first among those in flight */
  function oldest(): [number, InFlight] | undefined {
    for (const e of inFlight) return e
    return undefined
  }

  /** The event a line answers, and the answer; undefined when the line is not an answer (a protocol error). */
  function answerOf(line: string): { seq: number; entry: InFlight; answer: Record<string, unknown> } | undefined {
    let parsed: unknown
    try {
      parsed = JSON.parse(line)
    } catch {
      return undefined
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined
    const answer = parsed as Record<string, unknown>
    if (answer.seq !== undefined) {
      const entry = typeof answer.seq === 'number' ? inFlight.get(answer.seq) : undefined
      if (!entry) return undefined
      const { seq, ...rest } = answer
      return { seq: seq as number, entry, answer: rest }
    }
    if (answer.type === undefined && answer.op === undefined) return undefined
    const head = oldest()
    return head && { seq: head[0], entry: head[1], answer }
  }

  function onLine(line: string): void {
    if (line.trim() === '') return
    if (!inFlight.size) {
      opts.log.warn('transform process wrote a line nobody asked for', { ...logFields, line: line.slice(0, 200) })
      return
    }
    const found = answerOf(line)
    if (!found) return notAnAnswer(line)
    failures = 0
    inFlight.delete(found.seq)
    headSince = Date.now()
    if (inFlight.size === 0) stopWatchdog()
    found.entry.done(normalizeAction(found.answer, found.entry.event, label))
  }

  /**
   * A line that is not an answer: which event it belongs to cannot be known, so nothing is matched by position any
   * more. The process is restarted and every event in flight sent again; the oldest one fails after STRAY_RETRIES.
   */
  function notAnAnswer(line: string): void {
    const proc = child!
    const shown = line.slice(0, 200)
    failures++
    lastFailure = `wrote a line that is not an answer: ${shown}`
    const pending = [...inFlight.values()]
    const head = pending[0]
    head.strays++
    opts.log.warn('transform process wrote a line that is not an answer; restarting it and sending its events again', {
      ...logFields,
      line: shown,
      id: head.event.id,
    })
    inFlight.clear()
    forget(proc)
    if (head.strays > STRAY_RETRIES) {
      pending.shift()
      head.done({
        ok: false,
        error: `${label} wrote a line that is not an answer while id ${idOf(head.event)} was the oldest in flight ` +
          `(${head.strays} times, restarted each time; stdout is for answers only, log to stderr): ${shown}`,
      })
    }
    if (pending.length) void send(pending)
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

  /** Forgets the current process (killing it if alive); what it had in flight is the caller's. */
  function forget(proc: ChildProcess): void {
    child = undefined
    stdoutBuf = ''
    stopWatchdog()
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  }

  /** Forgets the current process (killing it if alive) and fails what it had in flight. */
  function detach(proc: ChildProcess, reason: (head: RowEvent, i: number) => string): void {
    if (child !== proc) return
    const lost = [...inFlight.values()]
    inFlight.clear()
    forget(proc)
    for (let i = 0; i < lost.length; i++) lost[i].done({ ok: false, error: reason(lost[i].event, i) })
  }

  function checkTimeout(): void {
    const proc = child
    const head = oldest()?.[1]
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
    const delay = failures === 0 ? 0 : backoffDelay(failures - 1, { baseMs: RESTART_BASE_MS, maxMs: RESTART_MAX_MS })
    starting = (async () => {
      if (delay > 0) await sleep(delay)
      return start()
    })()
    try {
      return await starting
    } finally {
      starting = undefined
    }
  }

  /**
   * Writes events to the process (started if needed), each line with a new `seq`. `rejectOnStart`: a process that
   * cannot be started rejects (run() reports it); otherwise (events sent again) the events fail with that error.
   */
  async function send(entries: InFlight[], rejectOnStart = false): Promise<void> {
    let proc: ChildProcess
    try {
      proc = await ensureChild()
    } catch (err) {
      if (rejectOnStart) throw err
      for (const e of entries) e.done({ ok: false, error: errorMessage(err) })
      return
    }
    if (inFlight.size === 0) headSince = Date.now()
    const lines: string[] = new Array(entries.length)
    for (let i = 0; i < entries.length; i++) {
      const seq = nextSeq++
      inFlight.set(seq, entries[i])
      lines[i] = `{"seq":${seq},${entries[i].json.slice(1)}`
    }
    startWatchdog()
    proc.stdin!.write(lines.join('\n') + '\n')
  }

  return {
    label,
    async run(events: RowEvent[]): Promise<TransformResult[]> {
      if (closed) throw new Error(`${label}: run() after close()`)
      if (events.length === 0) return []
      const results = new Array<Promise<TransformResult>>(events.length)
      const entries: InFlight[] = []
      for (let i = 0; i < events.length; i++) {
        const event = events[i]
        let json: string
        try {
          json = encodeEvent(event)
        } catch (err) {
          results[i] = Promise.resolve({
            ok: false,
            error: `${label}: id ${idOf(event)} cannot be sent as JSON: ${errorMessage(err)}`,
          })
          continue
        }
        results[i] = new Promise((done) => entries.push({ event, json, strays: 0, done }))
      }
      if (entries.length) await send(entries, true)
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
