// Logs: human-readable on a terminal, JSON lines otherwise (stderr either way; stdout is for command output).
// Level from PUFFGRES_LOG (debug|info|warn|error) or RUST_LOG-style `puffgres=debug` for users of the original.
import process from 'node:process'
import type { Logger } from './types.ts'

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const
type Level = keyof typeof LEVELS

/** Attribute names whose values are never logged. */
const SECRET = /pass(word)?|secret|api_?key|token|authorization/i

export function levelFromEnv(env: Record<string, string | undefined> = process.env): Level {
  const raw = (env.PUFFGRES_LOG || env.RUST_LOG || '').toLowerCase()
  for (const part of raw.split(',')) {
    const [target, lvl] = part.includes('=') ? part.split('=') : ['', part]
    if (target && target !== 'puffgres') continue
    const l = lvl === 'trace' ? 'debug' : lvl
    if (l in LEVELS) return l as Level
  }
  return 'info'
}

/** `scheme://user:password@` in a URL (a connection string inside an error message, say). */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*):[^@\s]*@/gi

/** Masks the password of any URL in the text. */
export function scrub(text: string): string {
  return text.replace(URL_CREDENTIALS, '$1:[redacted]@')
}

export function redact(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(fields)) {
    out[k] = SECRET.test(k) ? '[redacted]' : typeof v === 'bigint' ? v.toString() : typeof v === 'string' ? scrub(v) : v
  }
  return out
}

export interface LogOptions {
  level?: Level
  json?: boolean
  write?: (line: string) => void
}

export function createLogger(opts: LogOptions = {}): Logger {
  const min = LEVELS[opts.level ?? levelFromEnv()]
  const json = opts.json ?? !process.stderr.isTTY
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'))
  const emit = (level: Level, text: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < min) return
    const msg = scrub(text)
    const f = fields ? redact(fields) : {}
    if (json) {
      write(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...f }))
    } else {
      const extra = Object.entries(f).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      write(`${level === 'info' ? '' : level.toUpperCase() + ' '}${msg}${extra.length ? '  ' + extra.join(' ') : ''}`)
    }
  }
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  }
}
