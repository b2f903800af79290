// Values of command-line flags. A bad one is a UsageError: one line, exit status 2.
import { parseArgs } from 'node:util'

export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export function positiveInt(v: string | undefined, flag: string, fallback: number): number {
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag}: expected a positive whole number, got "${v}"`)
  return n
}

export function bool(v: string, flag: string): boolean {
  if (/^(true|1|yes|on)$/i.test(v)) return true
  if (/^(false|0|no|off)$/i.test(v)) return false
  throw new UsageError(`${flag}: expected true or false, got "${v}"`)
}

export function port(v: string | undefined, flag: string, fallback: number | undefined): number | undefined {
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`${flag}: expected a port (0-65535), got "${v}"`)
  return n
}

type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean }

/**
 * `node:util` parseArgs with one rule for every boolean flag, as the original puffgres (clap) and users expect:
 * `--x` is true; `--x=false`, `--x false` (the words true/false only) and `--no-x` set it explicitly; the last one
 * given wins. Unknown flags and a string flag without its value stay errors (ERR_PARSE_ARGS_*, exit status 2).
 */
export function parseFlags<T extends Record<string, OptionSpec>>(
  argv: string[],
  options: T,
  opts: { allowPositionals?: boolean } = {},
): {
  values: { [K in keyof T]?: T[K]['type'] extends 'boolean' ? boolean : string }
  positionals: string[]
} {
  const booleans = new Set(Object.keys(options).filter((k) => options[k].type === 'boolean'))
  const takesValue = new Set<string>()
  for (const [k, o] of Object.entries(options)) {
    if (o.type === 'string') {
      takesValue.add(`--${k}`)
      if (o.short) takesValue.add(`-${o.short}`)
    }
  }
  const explicit: Record<string, boolean> = {}
  const rest: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') {
      rest.push(...argv.slice(i))
      break
    }
    if (takesValue.has(a)) { // its value may look like a flag; pass both through untouched
      rest.push(a)
      if (i + 1 < argv.length) rest.push(argv[++i])
      continue
    }
    const m = /^--(no-)?([^=]+)(?:=(.*))?$/.exec(a)
    if (m && booleans.has(m[2]) && !(m[1] && m[3] !== undefined)) {
      const [, negated, name, inline] = m
      let v = !negated
      if (inline !== undefined) v = bool(inline, `--${name}`)
      else if (!negated && /^(true|false)$/i.test(argv[i + 1] ?? '')) v = bool(argv[++i], `--${name}`)
      explicit[name] = v
      continue
    }
    rest.push(a)
  }
  const parsed = parseArgs({
    args: rest,
    options: options as Record<string, OptionSpec>,
    allowPositionals: opts.allowPositionals ?? false,
    strict: true,
  })
  return { values: { ...parsed.values, ...explicit } as any, positionals: parsed.positionals }
}

/**
 * A `--slot` value. PostgreSQL allows only a-z, 0-9 and "_" in slot names, while the original puffgres's README
 * shows `--slot my-slot`: a "-" becomes "_" (said on stderr) instead of failing.
 */
export function slotFlag(v: string | undefined): string | undefined {
  if (v === undefined || !v.includes('-')) return v
  const name = v.replaceAll('-', '_')
  console.error(`note: --slot ${v}: PostgreSQL slot names allow only a-z, 0-9 and "_"; using "${name}"`)
  return name
}
