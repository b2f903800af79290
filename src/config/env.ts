// `${VAR}` expansion in every string of a config file, and `.env` loading like the original puffgres.
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { ConfigError } from './errors.ts'

type Env = Record<string, string | undefined>

/** Replaces `${VAR}` (and `${VAR:-default}`) in every string of `value`; `$${` escapes a literal `${`. */
export function expandEnv(value: unknown, env: Env, file: string, path: string[] = []): unknown {
  if (typeof value === 'string') return expandString(value, env, file, path)
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, file, [...path, String(i)]))
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = expandEnv(v, env, file, [...path, k])
    return out
  }
  return value
}

function expandString(s: string, env: Env, file: string, path: string[]): string {
  return s.replace(/\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (m, name, fallback) => {
    if (m === '$${') return '${'
    const v = env[name]
    if (v !== undefined && v !== '') return v
    if (fallback !== undefined) return fallback
    throw new ConfigError(`${file}: ${path.join('.')}: environment variable ${name} is not set`)
  })
}

/** Parses a `.env` file: KEY=value lines, optional `export`, quotes, # comments. */
export function parseDotEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line)
    if (!m) continue
    let v = m[2]
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) {
      v = v.slice(1, -1)
      if (m[2].startsWith('"')) v = v.replace(/\\n/g, '\n')
    } else {
      v = v.replace(/\s+#.*$/, '')
    }
    out[m[1]] = v
  }
  return out
}

/**
 * The environment a config is expanded with: the process environment, plus the nearest `.env` found from `dir`
 * upwards for variables the process does not set (the process environment always wins).
 */
export function configEnv(dir: string, base: Env = process.env): Env {
  let d = resolve(dir)
  for (;;) {
    const f = join(d, '.env')
    if (existsSync(f)) {
      const vars = parseDotEnv(readFileSync(f, 'utf8'))
      return { ...vars, ...Object.fromEntries(Object.entries(base).filter(([, v]) => v !== undefined)) }
    }
    const up = dirname(d)
    if (up === d) return base
    d = up
  }
}
