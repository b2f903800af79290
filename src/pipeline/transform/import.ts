// Imports a user's transform module so that its `from 'puffgres'` resolves on every runtime.
// Bun (and a compiled binary) resolve 'puffgres' through the virtual module cli.ts registers. Deno has no runtime
// module hooks and resolves bare specifiers while it builds the module graph: a transform's
// `import { RowEvent, Action } from 'puffgres'` (the original puffgres's README, a value-style import of types) or
// `import { defineTransform } from 'puffgres'` fails with `Import "puffgres" not a dependency` in a project without
// a deno.json mapping it. There the module is loaded from a sibling copy whose 'puffgres' specifier names our own
// mod.ts (a file: URL, or https: when puffgres runs from JSR); as a sibling, its relative imports and
// `import.meta.url` lookups resolve as in the original. The copy is removed once imported.
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import process from 'node:process'

const g = globalThis as { Bun?: unknown }

/** `from 'puffgres'`, `import 'puffgres'`, `import('puffgres')`; not 'puffgres/…' or other packages. */
const PUFFGRES_SPECIFIER = /(\bfrom\s*|\bimport\s*\(?\s*)(['"])puffgres\2/g

/** mod.ts beside this module's folder: what 'puffgres' means to a transform. */
export const MOD_URL = new URL('../../mod.ts', import.meta.url).href

/** Rewrites the bare 'puffgres' specifiers of a module's source to `target`; undefined when there are none. */
export function rewritePuffgresImports(source: string, target = MOD_URL): string | undefined {
  if (!PUFFGRES_SPECIFIER.test(source)) return undefined
  PUFFGRES_SPECIFIER.lastIndex = 0
  return source.replace(PUFFGRES_SPECIFIER, (_m, lead: string, q: string) => `${lead}${q}${target}${q}`)
}

let copies = 0

export async function importTransformModule(path: string): Promise<Record<string, unknown>> {
  // always a file: URL (a bare absolute path can resolve against a remote registry, see runtime-notes.md)
  if (g.Bun) return await import(pathToFileURL(path).href)
  const rewritten = rewritePuffgresImports(readFileSync(path, 'utf8'))
  if (rewritten === undefined) return await import(pathToFileURL(path).href)
  const copy = join(dirname(path), `.${basename(path)}.puffgres-${process.pid}-${++copies}${extension(path)}`)
  writeFileSync(copy, rewritten)
  try {
    return await import(pathToFileURL(copy).href)
  } finally {
    rmSync(copy, { force: true })
  }
}

/** The copy keeps the original's extension so that the runtime picks the same loader (.ts, .mts, .js…). */
function extension(path: string): string {
  const m = /\.[A-Za-z]+$/.exec(path)
  return m ? m[0] : '.ts'
}
