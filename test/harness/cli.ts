// Runs the CLI in-process, capturing what it prints.
import { main } from '../../src/cli.ts'

export async function runCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const log = console.log
  const error = console.error
  const warn = console.warn
  console.log = (...a: unknown[]) => out.push(a.join(' '))
  console.error = (...a: unknown[]) => err.push(a.join(' '))
  console.warn = (...a: unknown[]) => err.push(a.join(' '))
  try {
    const code = await main(args)
    return { code, out: out.join('\n'), err: err.join('\n') }
  } finally {
    console.log = log
    console.error = error
    console.warn = warn
  }
}
