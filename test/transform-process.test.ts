// The `bin:` runner against real child processes: a JSON-lines script run by the current runtime, and a shell
// script that dies at start.
import { describe, expect, test } from 'bun:test'
import { fileURLToPath } from 'node:url'
import { createTransformRunner, type TransformRunner } from '../src/pipeline/transform/mod.ts'
import { parseTransformSpec } from '../src/config/transform-spec.ts'
import type { Logger, RowEvent } from '../src/types.ts'

const FIXTURES = fileURLToPath(new URL('./fixtures/transforms', import.meta.url))
const ECHO = `bin:${process.execPath} ./jsonl-echo.ts`

function recordingLog() {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = []
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    void lines.push({ level, msg, fields })
  const log: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
  return { log, lines }
}

function ev(id: number | string, row?: Record<string, unknown>): RowEvent {
  const type = row ? 'insert' : 'delete'
  return { type, op: type, id, schema: 'public', table: 't', new: row, lsn: '0/1', mapping: 'things' }
}

async function withRunner(
  command: string,
  opts: { timeoutMs?: number; maxConsecutiveFailures?: number; env?: Record<string, string> } = {},
  body: (r: TransformRunner, lines: ReturnType<typeof recordingLog>['lines']) => Promise<void>,
) {
  const { log, lines } = recordingLog()
  const r = await createTransformRunner(parseTransformSpec(command, FIXTURES), { mapping: 'things', log, ...opts })
  try {
    await body(r, lines)
  } finally {
    await r.close()
  }
}

const pidOf = (r: { ok: boolean; action?: unknown }) => (r as any).action.attributes.pid as number

describe('bin: transform process', () => {
  test('answers many lines in flight, in order, from one long-running process', async () => {
    await withRunner(ECHO, { env: { ...process.env, JSONL_ENV: 'from-env' } as Record<string, string> }, async (r) => {
      const events = Array.from({ length: 300 }, (_, i) => ev(i + 1, { n: i }))
      events[5] = ev(6, { action: { type: 'skip' } })
      events[6] = ev(7)
      events[7] = ev(8, { action: { type: 'delete' } })
      const out = await r.run(events)
      expect(out).toHaveLength(300)
      expect(out[0]).toMatchObject({
        ok: true,
        action: { type: 'upsert', id: 1, attributes: { seen: 'insert', env: 'from-env' } },
      })
      expect(out[5]).toEqual({ ok: true, action: { type: 'skip' } })
      expect(out[6]).toMatchObject({ ok: true, action: { type: 'upsert', id: 7, attributes: { seen: 'delete' } } })
      expect(out[7]).toEqual({ ok: true, action: { type: 'delete', id: 8 } })
      expect(out.every((o) => o.ok)).toBe(true)
      // concurrent batches share the process and keep their own order
      const [a, b] = await Promise.all([r.run([ev('a', {})]), r.run([ev('b', {}), ev('c', {})])])
      expect([a[0], ...b].map((o) => o.ok && o.action.type === 'upsert' && o.action.id)).toEqual(['a', 'b', 'c'])
      expect(new Set([...out, ...a, ...b].filter((o) => 'action' in o && o.action.type === 'upsert').map(pidOf)).size)
        .toBe(1)
    })
  })

  test('validates each line: an invalid action fails that event only, a line that is not an answer restarts the process; stderr reaches the log', async () => {
    await withRunner(ECHO, {}, async (r, lines) => {
      const out = await r.run([
        ev(1, { action: { type: 'upsert', attributes: { $bad: 1 } } }),
        ev(2, { garbage: true }),
        ev(3, { log: 'hello from the transform' }),
      ])
      expect(out[0]).toEqual({
        ok: false,
        error:
          `transform ${ECHO} returned an invalid action for id 1: attributes.$bad: attribute names cannot start with '$'`,
      })
      expect(out[1]).toEqual({
        ok: false,
        error: `transform ${ECHO} wrote a line that is not an answer while id 2 was the oldest in flight (3 times, ` +
          `restarted each time; stdout is for answers only, log to stderr): this is not json`,
      })
      expect(out[2].ok).toBe(true)
      await r.close() // stderr is read through to the end before the process counts as closed
      expect(lines).toContainEqual({
        level: 'info',
        msg: 'transform stderr',
        fields: { mapping: 'things', transform: ECHO, line: 'note: hello from the transform' },
      })
    })
  })

  test('a stray stdout line never shifts answers onto other rows: the process restarts and the events are sent again', async () => {
    await withRunner(ECHO, {}, async (r, lines) => {
      const out = await r.run([
        ev(1, { action: { type: 'upsert', attributes: { n: 1 } } }),
        ev(2, { stray: true, action: { type: 'upsert', attributes: { n: 2 } } }),
        ev(3, { action: { type: 'upsert', attributes: { n: 3 } } }),
        ev(4, { action: { type: 'upsert', attributes: { n: 4 } } }),
        ev(5, { action: { type: 'upsert', attributes: { n: 5 } } }),
      ])
      expect(out[0]).toEqual({ ok: true, action: { type: 'upsert', id: 1, attributes: { n: 1 } } })
      // row 2's own stray line comes before its answer every time: it fails, and it alone
      expect(out[1].ok).toBe(false)
      expect((out[1] as { error: string }).error).toContain('wrote a line that is not an answer while id 2')
      for (const k of [3, 4, 5]) {
        expect(out[k - 1]).toEqual({ ok: true, action: { type: 'upsert', id: k, attributes: { n: k } } })
      }
      expect(lines.some((l) => l.msg.startsWith('transform process wrote a line that is not an answer'))).toBe(true)
    })
  })

  test('answers that name their seq are matched to their events in any order', async () => {
    await withRunner(`bin:${process.execPath} ./jsonl-seq.ts`, {}, async (r) => {
      const out = await r.run(Array.from({ length: 50 }, (_, i) => ev(i + 1, { n: i + 1 })))
      expect(out.map((o) => o.ok && o.action.type === 'upsert' && [o.action.id, o.action.attributes.n]))
        .toEqual(Array.from({ length: 50 }, (_, i) => [i + 1, i + 1]))
    })
  })

  test('a crash fails the events in flight and the next batch runs on a restarted process', async () => {
    await withRunner(ECHO, {}, async (r) => {
      const before = await r.run([ev(1, {})])
      const out = await r.run([ev(2, {}), ev(3, { crash: true }), ev(4, {}), ev(5, {})])
      expect(out[0].ok).toBe(true)
      for (const [i, id] of [[1, 3], [2, 4], [3, 5]]) {
        expect(out[i]).toEqual({
          ok: false,
          error: `transform ${ECHO} exited with code 3 while id ${id} was in flight (stderr: crashing on 3)`,
        })
      }
      const after = await r.run([ev(6, {})])
      expect(after[0].ok).toBe(true)
      expect(pidOf(after[0])).not.toBe(pidOf(before[0]))
    })
  })

  test('a process that stops answering is killed after the timeout and replaced', async () => {
    // 1.5 s: far above an answer's time, and above a process start on a loaded machine (the replacement's first
    // event includes its start); the first process is started before the clock matters
    await withRunner(ECHO, { timeoutMs: 1500 }, async (r) => {
      expect((await r.run([ev(0, {})]))[0].ok).toBe(true)
      const out = await r.run([ev(1, {}), ev(2, { hang: true }), ev(3, {})])
      expect(out[0].ok).toBe(true)
      expect(out[1]).toEqual({ ok: false, error: `transform ${ECHO} timed out after 1500 ms for id 2` })
      expect(out[2]).toEqual({
        ok: false,
        error: `transform ${ECHO} was restarted because id 2 timed out, while id 3 was in flight`,
      })
      expect((await r.run([ev(4, {})]))[0].ok).toBe(true)
    })
  })

  test('a process that keeps dying makes run() reject with a clear error', async () => {
    await withRunner('bin:./crash-at-start.sh', { maxConsecutiveFailures: 2 }, async (r) => {
      const first = await r.run([ev(1, {})])
      expect(first[0].ok).toBe(false)
      expect((first[0] as { error: string }).error).toContain('exited with code 1 while id 1 was in flight')
      await r.run([ev(2, {})])
      await expect(r.run([ev(3, {})])).rejects.toThrow(
        'transform bin:./crash-at-start.sh keeps failing: 2 times in a row without answering; last: exited with code 1 (stderr: missing configuration)',
      )
    })
  })

  test('a program that cannot be started rejects run() at once', async () => {
    await withRunner('bin:./no-such-program', {}, async (r) => {
      await expect(r.run([ev(1, {})])).rejects.toThrow(
        `transform bin:./no-such-program could not be started (${FIXTURES}/no-such-program): `,
      )
    })
  })

  test('close() ends the process; run() afterwards is refused', async () => {
    const { log } = recordingLog()
    const r = await createTransformRunner(parseTransformSpec(ECHO, FIXTURES), { mapping: 'things', log })
    expect((await r.run([ev(1, {})]))[0].ok).toBe(true)
    await r.close()
    await expect(r.run([ev(2, {})])).rejects.toThrow('run() after close()')
  })
})
