// The shape of src/, checked: no import cycles among its modules (type-only imports included: a type cycle still
// ties two modules' designs together), and no module over MAX_LINES, except the files listed below. The lists say
// why each exception exists; shrink them as files are split (a listed file that no longer needs its entry fails
// this test, so the lists only ever get shorter).
import { describe, expect, test } from 'bun:test'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src')
const MAX_LINES = 400

/** Over MAX_LINES for good: the one exception the layout rules allow. Paths relative to src/. */
const LONG_FOR_GOOD: Record<string, string> = {
  // the pgoutput decoder: one message type after another, clearer whole than split (under 400 today, but another
  // message type may push it over, and that is fine)
  'postgres/pgoutput.ts': 'the pgoutput decoder',
}

/** Over MAX_LINES today and waiting to be split (issue 16; none left). Remove an entry once its file is split. */
const LONG_TO_SPLIT: Record<string, string> = {}

/** Import cycles present today, each as its sorted member list joined by ' ↔ '. None: keep it that way. */
const CYCLES_TO_BREAK: string[] = []

/**
 * The folder order of src/, lowest first (docs/ARCHITECTURE.md, "Stages → files"): a module imports from its own
 * folder, or from a folder in a lower layer; never upward, never sideways into another folder of its layer. The root
 * modules below everything are the base (they import only each other); the entry points sit on top.
 * A module in the wrong layer is a design question, not a list entry: move it (one home per job, invariant 12).
 */
const LAYERS: string[][] = [
  [
    'types.ts',
    'transform-types.ts',
    'errors.ts',
    'log.ts',
    'runtime.ts',
    'concurrency.ts',
    'retry.ts',
    'abort.ts',
    'version.ts',
  ],
  // membership predicates: parsed by config at load, rendered to SQL by the source reader, evaluated by the pipeline
  ['membership'],
  ['config'],
  ['postgres'],
  // the source reader: catalog, read plan, row readers (by key, COPY page, sample, re-check), decoding with postgres/
  ['source'],
  ['turbopuffer'],
  ['local'],
  ['embeddings'],
  ['pipeline'],
  // siblings: backfill and the stream share the pipeline; neither knows the other
  ['backfill', 'stream'],
  ['ops'],
  ['commands'],
  ['cli.ts', 'mod.ts'],
]

/**
 * Imports against the folder order present today, as `from → to` (paths relative to src/). None (the last ones went
 * when the source reader, membership, the transform spec parser and the declarative embedding moved, issue 23): keep
 * it that way. An entry that no longer exists fails the test.
 */
const ORDER_TO_UNTANGLE: Record<string, string> = {}

/** The layer and the folder (or root file) of a module, by its path relative to src/. */
function placeOf(file: string): { layer: number; folder: string } {
  const top = file.split('/')[0]!
  const layer = LAYERS.findIndex((l) => l.includes(top))
  if (layer < 0) throw new Error(`src/${file}: its folder is not in LAYERS (test/architecture.test.ts): place it`)
  return { layer, folder: top }
}

/**
 * The relative specifiers a module imports or re-exports statically: `import … from`, `import type … from`,
 * `export … from`, `export type … from` and side-effect `import '…'`, also spread over several lines.
 * Only statements starting a line count, so a comment or a JSDoc line that mentions `import` does not. The clause
 * before `from` never holds `(`, `=`, a quote or a backtick, which keeps code and template text from matching.
 */
function importSpecifiers(source: string): string[] {
  const re = /^[ \t]*(?:import|export)\s(?:[^'"`;()=]*?\sfrom\s*)?['"]([^'"]+)['"]/gm
  return [...source.matchAll(re)].map((m) => m[1]!)
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return sourceFiles(path)
    return name.endsWith('.ts') ? [path] : []
  })
}

function lineCount(text: string): number {
  const n = text.split('\n').length
  return text.endsWith('\n') ? n - 1 : n
}

const rel = (path: string) => relative(SRC, path).split('\\').join('/')

/** The module graph of src/: each file → the src files it imports (relative specifiers only). */
function moduleGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const file of sourceFiles(SRC)) {
    const targets: string[] = []
    for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue
      const target = resolve(dirname(file), spec)
      // a specifier that names no file is deno check's to report (and may sit inside a template string)
      if (existsSync(target)) targets.push(rel(target))
    }
    graph.set(rel(file), targets)
  }
  return graph
}

/** Strongly connected components with more than one module (or a module importing itself): the import cycles. */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  const visit = (v: string) => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!))
      }
    }
    if (low.get(v) !== index.get(v)) return
    const component: string[] = []
    let w: string
    do {
      w = stack.pop()!
      onStack.delete(w)
      component.push(w)
    } while (w !== v)
    if (component.length > 1 || graph.get(v)!.includes(v)) found.push(component.sort())
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return found
}

/** One concrete loop through a cycle's modules, for the error message: a → b → … → a. */
function loopThrough(graph: Map<string, string[]>, members: string[]): string {
  const inside = new Set(members)
  const start = members[0]!
  const seen = new Map<string, string>()
  const queue = [start]
  while (queue.length) {
    const v = queue.shift()!
    for (const w of graph.get(v) ?? []) {
      if (!inside.has(w)) continue
      if (w === start) {
        const path = [start]
        for (let u = v; u !== start; u = seen.get(u)!) path.splice(1, 0, u)
        return [...path, start].join(' → ')
      }
      if (!seen.has(w)) {
        seen.set(w, v)
        queue.push(w)
      }
    }
  }
  return members.join(' ↔ ')
}

describe('importSpecifiers', () => {
  test('finds every static import and re-export form, and nothing in comments or code', () => {
    const source = [
      "import { a } from './a.ts'",
      "import type { B } from '../b.ts'",
      'import {',
      '  c,',
      '  type C,',
      "} from './c.ts'",
      "export { d } from './d.ts'",
      "export type { E } from './e.ts'",
      "export * from './f.ts'",
      "import './g.ts'",
      "import postgres from 'postgres'",
      "// import { x } from './commented.ts'",
      " * import { y } from './jsdoc.ts'",
      'export function h(from: string) {',
      "  throw new Error(`copy from '${from}'`)",
      '}',
      "export const i = 'from'",
      "const j = await import('./dynamic.ts')",
    ].join('\n')
    expect(importSpecifiers(source)).toEqual([
      './a.ts',
      '../b.ts',
      './c.ts',
      './d.ts',
      './e.ts',
      './f.ts',
      './g.ts',
      'postgres',
    ])
  })
})

describe('src/ layout', () => {
  const graph = moduleGraph()

  test('the module graph is read (sanity: a broken parser would pass the checks below vacuously)', () => {
    expect(graph.size).toBeGreaterThan(50)
    const edges = [...graph.values()].reduce((n, targets) => n + targets.length, 0)
    expect(edges).toBeGreaterThan(200)
    expect(Math.max(...[...graph.values()].map((targets) => targets.length))).toBeGreaterThan(5)
  })

  test('no import cycles among src/ modules (import type included)', () => {
    const found = cycles(graph)
    const allowed = new Set(CYCLES_TO_BREAK)
    const unexpected = found.filter((c) => !allowed.has(c.join(' ↔ ')))
    const stale = CYCLES_TO_BREAK.filter((c) => !found.some((f) => f.join(' ↔ ') === c))
    expect(unexpected.map((c) => `import cycle: ${loopThrough(graph, c)}`)).toEqual([])
    expect(stale.map((c) => `cycle ${c} is gone: remove it from CYCLES_TO_BREAK in test/architecture.test.ts`))
      .toEqual([])
  })

  test('every import follows the folder order (LAYERS): down, or within its own folder', () => {
    const against: string[] = []
    for (const [file, targets] of graph) {
      const from = placeOf(file)
      for (const target of targets) {
        const to = placeOf(target)
        if (from.folder === to.folder) continue
        // root modules of one layer (the base, the entry points) may import each other
        const roots = from.folder.endsWith('.ts') && to.folder.endsWith('.ts')
        const ok = to.layer < from.layer || (to.layer === from.layer && roots)
        if (!ok) against.push(`${file} → ${target}`)
      }
    }
    const unexpected = against.filter((e) => !(e in ORDER_TO_UNTANGLE))
    const stale = Object.keys(ORDER_TO_UNTANGLE).filter((e) => !against.includes(e))
    expect(unexpected.map((e) => `src/${e} imports against the folder order (LAYERS in test/architecture.test.ts)`))
      .toEqual([])
    expect(stale.map((e) => `${e} is gone: remove it from ORDER_TO_UNTANGLE in test/architecture.test.ts`))
      .toEqual([])
  })

  test('placeOf knows every folder, and the order catches an upward import', () => {
    expect(placeOf('stream/engine.ts')).toEqual({ layer: 9, folder: 'stream' })
    expect(placeOf('retry.ts').layer).toBe(0)
    expect(() => placeOf('nowhere/x.ts')).toThrow('not in LAYERS')
    // what the check above does for one edge: postgres importing the pipeline goes up
    expect(placeOf('pipeline/writer.ts').layer).toBeGreaterThan(placeOf('postgres/dlq.ts').layer)
    // the source reader sits above the decoder it uses and below every path that reads through it
    expect(placeOf('source/page.ts').layer).toBeGreaterThan(placeOf('postgres/values.ts').layer)
    expect(placeOf('source/page.ts').layer).toBeLessThan(placeOf('pipeline/row-identity.ts').layer)
    expect(placeOf('membership/mod.ts').layer).toBeLessThan(placeOf('config/load.ts').layer)
  })

  test('a private module (_name.ts, Deno std style) is imported only from its own folder', () => {
    const leaks: string[] = []
    for (const [file, targets] of graph) {
      for (const target of targets) {
        const name = target.split('/').pop()!
        if (name.startsWith('_') && dirname(target) !== dirname(file)) leaks.push(`src/${file} imports src/${target}`)
      }
    }
    expect(leaks).toEqual([])
  })

  test(`no module over ${MAX_LINES} lines except the listed ones`, () => {
    const long = new Map<string, number>()
    for (const file of graph.keys()) {
      const lines = lineCount(readFileSync(join(SRC, file), 'utf8'))
      if (lines > MAX_LINES) long.set(file, lines)
    }
    const unexpected = [...long].filter(([file]) => !(file in LONG_FOR_GOOD) && !(file in LONG_TO_SPLIT))
    expect(unexpected.map(([file, lines]) => `src/${file} has ${lines} lines (max ${MAX_LINES}): split it`))
      .toEqual([])
    const stale = Object.keys(LONG_TO_SPLIT).filter((file) => !long.has(file))
    expect(
      stale.map((file) =>
        graph.has(file)
          ? `src/${file} is ${MAX_LINES} lines or fewer now: remove it from LONG_TO_SPLIT in test/architecture.test.ts`
          : `src/${file} no longer exists: remove it from LONG_TO_SPLIT in test/architecture.test.ts`
      ),
    ).toEqual([])
  })
})
