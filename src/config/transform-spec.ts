// What a mapping's `transform = "..."` refers to: a TypeScript/JavaScript module, or a command speaking JSON lines.
import { isAbsolute, relative, resolve } from 'node:path'

export type TransformSpec =
  | {
    kind: 'module'
    /** absolute path of the `.ts` / `.js` file */
    path: string
    /** how errors name it, e.g. `transforms/x.ts` (defaults to the path relative to the working directory) */
    label?: string
  }
  | {
    kind: 'command'
    /** program then arguments; a relative program path (`./bin/x`) is resolved against `cwd` */
    argv: string[]
    /** working directory of the process (the project's `puffgres/` folder) */
    cwd: string
    label?: string
  }

/**
 * Interprets a mapping's `transform` value. `baseDir` is the project's `puffgres/` folder, against which relative
 * paths resolve. Throws a one-line error for an empty value or a command line with an unclosed quote.
 */
export function parseTransformSpec(value: string, baseDir: string): TransformSpec {
  const trimmed = value.trim()
  if (trimmed.startsWith('bin:')) {
    const argv = splitCommandLine(trimmed.slice(4))
    if (argv.length === 0) throw new Error(`transform "${value}": nothing after "bin:"`)
    return { kind: 'command', argv, cwd: resolve(baseDir), label: trimmed }
  }
  if (trimmed === '') throw new Error('transform: empty path')
  return { kind: 'module', path: resolve(baseDir, trimmed), label: trimmed }
}

/** Splits a command line the way a POSIX shell would for plain words, '…' and "…" quotes and backslash escapes. */
export function splitCommandLine(line: string): string[] {
  const out: string[] = []
  let word = ''
  let inWord = false
  let quote: '"' | "'" | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (quote === "'") {
      if (c === "'") quote = undefined
      else word += c
    } else if (quote === '"') {
      if (c === '"') quote = undefined
      else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) word += line[++i]
      else word += c
    } else if (c === "'" || c === '"') {
      quote = c
      inWord = true
    } else if (c === '\\' && i + 1 < line.length) {
      word += line[++i]
      inWord = true
    } else if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) out.push(word)
      word = ''
      inWord = false
    } else {
      word += c
      inWord = true
    }
  }
  if (quote) throw new Error(`transform command line has an unclosed ${quote}: ${line}`)
  if (inWord) out.push(word)
  return out
}

/** The program to spawn: `./x` and `dir/x` are relative to the spec's cwd, bare names are looked up in PATH. */
export function resolveProgram(spec: Extract<TransformSpec, { kind: 'command' }>): string {
  const prog = spec.argv[0]
  return isAbsolute(prog) || !prog.includes('/') ? prog : resolve(spec.cwd, prog)
}

export function specLabel(spec: TransformSpec): string {
  if (spec.label) return spec.label
  return spec.kind === 'module' ? relative(process.cwd(), spec.path) || spec.path : 'bin:' + spec.argv.join(' ')
}
