// Values of command-line flags. A bad one is a UsageError: one line, exit status 2.

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
