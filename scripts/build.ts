// Builds the single-file puffgres binaries with `bun build --compile`, one per platform, into dist/, and writes
// dist/SHA256SUMS (the format `sha256sum -c` reads). Run with Bun:
//   bun scripts/build.ts                       every target
//   bun scripts/build.ts --target linux-x64    one target (repeatable)
//   bun scripts/build.ts --outdir out/         another folder
// The host's own target uses the running Bun; the others are fetched by Bun from the npm registry
// (@oven/bun-<os>-<arch>) on first use and cached.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import process from 'node:process'
import { parseArgs } from 'node:util'

export const TARGETS = ['linux-x64', 'linux-arm64', 'darwin-x64', 'darwin-arm64', 'windows-x64'] as const
export type Target = typeof TARGETS[number]

const ROOT = resolve(import.meta.dirname!, '..')
const ENTRY = join(ROOT, 'src', 'cli.ts')

/** `puffgres-linux-x64`, `puffgres-windows-x64.exe` */
export function binaryName(target: Target): string {
  return `puffgres-${target}${target.startsWith('windows') ? '.exe' : ''}`
}

export function parseTarget(s: string): Target {
  const t = s.replace(/^bun-/, '')
  if (!(TARGETS as readonly string[]).includes(t)) {
    throw new Error(`unknown target "${s}" (one of: ${TARGETS.join(', ')})`)
  }
  return t as Target
}

/** Compiles src/cli.ts for one target; returns the binary's path. Throws with Bun's output when the build fails. */
export function buildTarget(target: Target, outdir: string, bun = process.execPath): string {
  const outfile = join(outdir, binaryName(target))
  const args = [
    'build',
    ENTRY,
    '--compile',
    `--target=bun-${target}`,
    `--outfile=${outfile}`,
    '--sourcemap=inline', // stack traces name src/ files and lines
    // puffgres reads its own .env files (next to puffgres.toml); a bunfig.toml in the working folder is not ours
    '--no-compile-autoload-dotenv',
    '--no-compile-autoload-bunfig',
  ]
  const r = spawnSync(bun, args, { cwd: ROOT, encoding: 'utf8' })
  if (r.error) throw new Error(`${target}: could not run ${bun}: ${r.error.message}`)
  if (r.status !== 0) {
    throw new Error(`${target}: bun build --compile failed (exit ${r.status}):\n${(r.stderr + r.stdout).trim()}`)
  }
  // the source map is embedded in the binary; Bun also leaves a copy beside it, which is not shipped
  rmSync(`${outfile}.map`, { force: true })
  return outfile
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolveHash, reject) => {
    const h = createHash('sha256')
    createReadStream(path).on('data', (d) => h.update(d)).on('error', reject).on(
      'end',
      () => resolveHash(h.digest('hex')),
    )
  })
}

/**
 * Writes `<outdir>/SHA256SUMS` for every binary of a known target present in outdir (so building one target after
 * another keeps the others' lines). Returns the file's text.
 */
export async function writeChecksums(outdir: string): Promise<string> {
  const names = new Set(TARGETS.map(binaryName))
  const files = readdirSync(outdir).filter((f) => names.has(f)).sort()
  const lines = []
  for (const f of files) lines.push(`${await sha256File(join(outdir, f))}  ${f}`)
  const text = lines.map((l) => l + '\n').join('')
  writeFileSync(join(outdir, 'SHA256SUMS'), text)
  return text
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      target: { type: 'string', multiple: true },
      outdir: { type: 'string', default: join(ROOT, 'dist') },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    console.log(`bun scripts/build.ts [--target <${TARGETS.join('|')}>]... [--outdir dist]`)
    return 0
  }
  let targets: Target[]
  try {
    targets = values.target?.length ? values.target.map(parseTarget) : [...TARGETS]
  } catch (e) {
    console.error(`error: ${(e as Error).message}`)
    return 2
  }
  const outdir = resolve(values.outdir!)
  mkdirSync(outdir, { recursive: true })
  let failed = 0
  for (const t of targets) {
    try {
      const file = buildTarget(t, outdir)
      console.log(`${binaryName(t)}  ${(statSync(file).size / 2 ** 20).toFixed(1)} MiB`)
    } catch (e) {
      failed++
      console.error(`error: ${(e as Error).message}`)
    }
  }
  await writeChecksums(outdir)
  console.log(`${join(outdir, 'SHA256SUMS')} written`)
  return failed ? 1 : 0
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)))
