// Loading and running user transforms. A mapping has either a TypeScript/JavaScript module (imported once, in
// process), a `bin:` command (a long-running child speaking JSON lines, see process.ts), or no transform
// (the identity: the row's columns become the attributes). All three give one validated result per event.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { applyEmbedding } from './declarative-embedding.ts'
import type { RowEvent, TransformContext } from '../../types.ts'
import {
  errorMessage,
  normalizeAction as normalizeOne,
  normalizeOwnedAttributes,
  type TransformResult,
} from './action.ts'
import { normalizeRowDocumentsResult } from './documents.ts'
import { showId } from '../docid.ts'
import { createTransformContext } from './_context.ts'
import { chunkResults } from './chunk-documents.ts'
import { createProcessRunner } from './process.ts'
import { importTransformModule } from './import.ts'
import { resolveProgram, specLabel, type TransformSpec } from '../../config/transform-spec.ts'
import type { TransformRunner, TransformRunnerOptions } from './types.ts'

export interface LoadedTransform {
  /** absolute path of the module */
  path: string
  label: string
  /** `export const batch = true`: the default export takes all events of a batch and returns one action each */
  batch: boolean
  fn: (...args: any[]) => unknown
  /** the original puffgres's per-event signature `(event, id, ctx)` */
  idArgument: boolean
}

const DEFAULT_TIMEOUT_MS = 30_000
const DEFAULT_BATCH_TIMEOUT_MS = 120_000

/**
 * Imports a transform module (`.ts` runs natively on Bun and Deno) and checks its exports. Throws a one-line error
 * naming the file when it is missing, fails to load, or has no default function export.
 */
export async function loadTransform(absPath: string, opts: { label?: string } = {}): Promise<LoadedTransform> {
  const path = resolve(absPath)
  const label = opts.label ?? specLabel({ kind: 'module', path })
  if (!existsSync(path)) throw new Error(`transform ${label}: file not found (${path})`)
  let mod: Record<string, unknown>
  try {
    mod = await importTransformModule(path)
  } catch (err) {
    throw new Error(`transform ${label} could not be loaded: ${errorMessage(err)}`)
  }
  const fn = mod.default
  if (typeof fn !== 'function') {
    const names = Object.keys(mod).filter((k) => k !== 'default')
    throw new Error(
      `transform ${label} must export a default function: export default function (event, ctx) { … }` +
        (fn === undefined ? '' : ` (its default export is ${fn === null ? 'null' : typeof fn})`) +
        (names.length ? `; it exports ${names.join(', ')}` : ''),
    )
  }
  if (mod.batch !== undefined && typeof mod.batch !== 'boolean') {
    throw new Error(`transform ${label}: \`export const batch\` must be true or false, got ${typeof mod.batch}`)
  }
  const batch = mod.batch === true
  return { path, label, batch, fn: fn as LoadedTransform['fn'], idArgument: !batch && fn.length === 3 }
}

/** Checks at `migrate` time that a module transform loads and exports a function. */
export async function validateTransformFile(absPath: string, opts: { label?: string } = {}): Promise<void> {
  await loadTransform(absPath, opts)
}

/** Checks any transform spec: a module loads; a `bin:` program exists (when given as a path). */
export async function validateTransform(spec: TransformSpec): Promise<void> {
  if (spec.kind === 'module') return validateTransformFile(spec.path, { label: spec.label })
  const prog = resolveProgram(spec)
  if (prog.includes('/') && !existsSync(prog)) {
    throw new Error(`transform ${specLabel(spec)}: program not found: ${prog}`)
  }
}

/** Builds the runner for a mapping; `spec` undefined gives the identity runner. */
export async function createTransformRunner(
  spec: TransformSpec | undefined,
  opts: TransformRunnerOptions,
): Promise<TransformRunner> {
  let runner: TransformRunner
  if (!spec) runner = createIdentityRunner(opts)
  else if (spec.kind === 'module') runner = createModuleRunner(await loadTransform(spec.path, spec), opts)
  else runner = createProcessRunner(spec, opts)
  const { embedding, embedder, chunking } = opts
  if (embedding && !embedder) {
    throw new Error(`mapping ${opts.mapping}: [mapping.embedding] needs an embedding provider, and none is configured`)
  }
  if (chunking) {
    // each chunk is embedded, not the row (chunk-documents.ts)
    const embed = embedding && { spec: embedding, embedder: embedder! }
    return {
      label: runner.label,
      run: async (events, o) => chunkResults(await runner.run(events), events, chunking, embed, o?.storedHashes),
      close: () => runner.close(),
    }
  }
  if (!embedding) return runner
  return {
    label: runner.label,
    run: async (events, o) => applyEmbedding(await runner.run(events), events, embedding, embedder!, o?.storedHashes),
    close: () => runner.close(),
  }
}

/**
 * turbopuffer attributes are scalars or flat arrays of non-null scalars: a json/jsonb object, or an array holding
 * objects or arrays, is written as its JSON text (a transform gets the parsed value and can pick fields instead).
 */
function attributeValue(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v
  if (!Array.isArray(v) || v.some((x) => x !== null && typeof x === 'object')) {
    return JSON.stringify(v, (_k, x) => typeof x === 'bigint' ? x.toString() : x)
  }
  // turbopuffer arrays hold no nulls: NULL elements of a PostgreSQL array are left out
  return v.includes(null) ? v.filter((x) => x !== null) : v
}

/** No transform: an upsert of the row's columns (all, or `columns`), a delete on delete. */
export function createIdentityRunner(opts: Pick<TransformRunnerOptions, 'mapping' | 'columns'>): TransformRunner {
  const label = `mapping ${opts.mapping}`
  const columns = opts.columns
  function one(event: RowEvent): TransformResult {
    if (event.type === 'delete') return { ok: true, action: { type: 'delete', id: event.id } }
    const row = event.new
    if (!row) return { ok: false, error: `${label}: ${event.type} event for id ${showId(event.id)} has no row` }
    const attributes: Record<string, unknown> = {}
    // `id` is the document's id in turbopuffer, never an attribute
    if (columns) {
      for (const c of columns) if (c !== 'id' && Object.hasOwn(row, c)) attributes[c] = attributeValue(row[c])
    } else {
      // rows are plain objects of own properties (decodeTuple, decodePage): no key array per row
      for (const c in row) if (c !== 'id') attributes[c] = attributeValue(row[c])
    }
    return normalizeOwnedAttributes(attributes, event, label)
  }
  return {
    label,
    run: (events) => Promise.resolve(events.map(one)),
    close: () => Promise.resolve(),
  }
}

/** The original puffgres's batch transforms destructure `{ event, id }` from each element: let that work too. */
function withEventAlias(event: RowEvent): RowEvent {
  const copy = { ...event }
  Object.defineProperty(copy, 'event', { value: event, enumerable: false })
  return copy
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function'
}

const TIMED_OUT = Symbol('timed out')

function withTimeout<T>(p: PromiseLike<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout>
  const deadline = new Promise<typeof TIMED_OUT>((r) => timer = setTimeout(() => r(TIMED_OUT), ms))
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer))
}

/**
 * Runs an imported module. Per-event transforms are all started at once (so their ctx.embed calls share requests)
 * and a synchronous answer is used without a promise. A timeout stops waiting but cannot stop JavaScript that
 * keeps running; a transform that never yields blocks the process (use `bin:` for untrusted code).
 */
export function createModuleRunner(loaded: LoadedTransform, opts: TransformRunnerOptions): TransformRunner {
  const label = `transform ${loaded.label}`
  const ctx: TransformContext = createTransformContext(opts)
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const batchTimeoutMs = opts.batchTimeoutMs ?? DEFAULT_BATCH_TIMEOUT_MS
  const fn = loaded.fn
  const normalizeAction = opts.documents === 'many' ? normalizeRowDocumentsResult : normalizeOne

  const threw = (event: RowEvent, err: unknown): TransformResult => {
    const retryable = (err as { retryable?: unknown })?.retryable === true
    const error = `${label} threw for id ${showId(event.id)}: ${errorMessage(err)}`
    return retryable ? { ok: false, error, retryable } : { ok: false, error }
  }

  async function runEach(events: RowEvent[]): Promise<TransformResult[]> {
    const results = new Array<TransformResult | undefined>(events.length)
    const pending: Promise<void>[] = []
    for (let i = 0; i < events.length; i++) {
      const event = events[i]
      let out: unknown
      try {
        out = loaded.idArgument ? fn(event, event.id, ctx) : fn(event, ctx)
      } catch (err) {
        results[i] = threw(event, err)
        continue
      }
      if (!isThenable(out)) {
        results[i] = normalizeAction(out, event, label)
        continue
      }
      pending.push(
        Promise.resolve(out).then(
          (action) => {
            results[i] ??= normalizeAction(action, event, label)
          },
          (err) => {
            results[i] ??= threw(event, err)
          },
        ),
      )
    }
    if (pending.length > 0) {
      // all calls started together, so one deadline for the batch is the same as one per event
      await withTimeout(Promise.all(pending), timeoutMs)
      for (let i = 0; i < events.length; i++) {
        results[i] ??= {
          ok: false,
          error: `${label} timed out after ${timeoutMs} ms for id ${showId(events[i].id)}`,
        }
      }
    }
    return results as TransformResult[]
  }

  async function runBatch(events: RowEvent[]): Promise<TransformResult[]> {
    const failAll = (error: string, retryable?: boolean): TransformResult[] =>
      events.map(() => (retryable ? { ok: false, error, retryable } : { ok: false, error }))
    const ids = events.length === 1 ? `id ${showId(events[0].id)}` : `a batch of ${events.length} events`
    let out: unknown
    try {
      const r = fn(events.map(withEventAlias), ctx)
      out = isThenable(r) ? await withTimeout(r, batchTimeoutMs) : r
    } catch (err) {
      return failAll(
        `${label} threw for ${ids}: ${errorMessage(err)}`,
        (err as { retryable?: unknown })?.retryable === true,
      )
    }
    if (out === TIMED_OUT) return failAll(`${label} timed out after ${batchTimeoutMs} ms for ${ids}`)
    if (!Array.isArray(out)) {
      return failAll(`${label} (batch) must return an array of actions, got ${out === null ? 'null' : typeof out}`)
    }
    if (out.length !== events.length) {
      return failAll(`${label} (batch) returned ${out.length} actions for ${events.length} events: expected one each`)
    }
    return out.map((action, i) => normalizeAction(action, events[i], label))
  }

  return {
    label,
    run(events) {
      if (events.length === 0) return Promise.resolve([])
      return loaded.batch ? runBatch(events) : runEach(events)
    },
    close: () => Promise.resolve(),
  }
}
