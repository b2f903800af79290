import { afterEach, describe, expect, test } from 'bun:test'
import { ConfigError } from '../src/config/errors.ts'
import { expandEnv, parseDotEnv } from '../src/config/env.ts'
import { loadConfig } from '../src/config/load.ts'
import { makeProject, migration, type Project } from './harness/project.ts'

let project: Project | undefined
afterEach(() => project?.remove())

const env = { DATABASE_URL: 'postgres://x@localhost/db' }

function load(spec: Parameters<typeof makeProject>[0], e: Record<string, string> = env) {
  project = makeProject(spec)
  return loadConfig(project.config, e)
}

function loadError(spec: Parameters<typeof makeProject>[0], e: Record<string, string> = env): string {
  try {
    load(spec, e)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as Error).message.replace(project!.dir + '/', '')
  }
  throw new Error('expected a ConfigError')
}

describe('puffgres.toml', () => {
  test('a valid project loads, with defaults and resolved mappings', () => {
    const c = load({
      databaseUrl: '${DATABASE_URL}',
      migrations: {
        '001_items.toml': migration({ name: 'items', table: 'items', membership: "status = 'active'" }),
        '002_items.toml': migration({ name: 'items', version: 2, table: 'items', id: ['a', 'b'] }),
      },
    })
    expect(c.postgres.connectionString).toBe(env.DATABASE_URL)
    expect(c.stream.slot).toBe('puffgres')
    expect(c.stream.publication).toBe('puffgres_pub')
    expect(c.migrations.map((m) => m.version)).toEqual([1, 2])
    expect(c.mappings).toHaveLength(1)
    expect(c.mappings[0].version).toBe(2)
    expect(c.mappings[0].idColumns).toEqual(['a', 'b'])
    expect(c.mappings[0].schema).toBe('public')
    expect(c.mappings[0].hash).toMatch(/^[0-9a-f]{64}$/)
  })

  test('an unset ${VAR} names the variable, the file and the field', () => {
    const msg = loadError({ databaseUrl: '${NOPE_NOT_SET}' })
    expect(msg).toBe('puffgres.toml: postgres.connection_string: environment variable NOPE_NOT_SET is not set')
  })

  test('${VAR:-default} and $${ escapes', () => {
    expect(expandEnv({ a: '${X:-dflt}', b: '$${X}', c: ['${Y}'] }, { Y: 'y' }, 'f')).toEqual({
      a: 'dflt',
      b: '${X}',
      c: ['y'],
    })
  })

  test('a missing field is named', () => {
    project = makeProject({ databaseUrl: 'x' })
    project.write('puffgres.toml', '[postgres]\nconnection_string = "x"\n')
    expect(() => loadConfig(project!.config, env)).toThrow(`${project.config}: turbopuffer: is required`)
  })

  test('an unknown key is an error, not ignored', () => {
    const msg = loadError({ databaseUrl: 'x', extra: '[stream]\nslott = "a"' })
    expect(msg).toBe('puffgres.toml: stream.slott: unknown key')
  })

  test('[stream] failover_slot is a boolean (unset: run and backfill take it as true)', () => {
    expect(load({ databaseUrl: 'x' }).stream.failover_slot).toBeUndefined()
    expect(load({ databaseUrl: 'x', extra: '[stream]\nfailover_slot = false' }).stream.failover_slot).toBe(false)
    expect(loadError({ databaseUrl: 'x', extra: '[stream]\nfailover_slot = "yes"' })).toBe(
      'puffgres.toml: stream.failover_slot: expected boolean, received string',
    )
  })

  test('invalid TOML names the file', () => {
    project = makeProject({ databaseUrl: 'x' })
    project.write('puffgres.toml', '[postgres\n')
    expect(() => loadConfig(project!.config, env)).toThrow(`${project.config}: invalid TOML: `)
  })

  test('a missing config file says how to make one', () => {
    expect(() => loadConfig('/nonexistent/puffgres.toml', env)).toThrow(/puffgres init/)
  })

  test('TURBOPUFFER_BASE_URL and PUFFGRES_BASE_NAMESPACE from the environment', () => {
    const c = load(
      { databaseUrl: 'x', migrations: { '001_a.toml': migration({ name: 'a', table: 'a', namespace: 'docs' }) } },
      { TURBOPUFFER_BASE_URL: 'http://127.0.0.1:1', PUFFGRES_BASE_NAMESPACE: 'dev_' },
    )
    expect(c.turbopuffer.baseUrl).toBe('http://127.0.0.1:1')
    expect(c.mappings[0].namespace).toBe('dev_docs')
  })

  test('a .env file beside the config fills variables the process does not set', () => {
    project = makeProject({ databaseUrl: '${FROM_DOTENV}' })
    project.write('.env', 'FROM_DOTENV="postgres://dotenv"\n# comment\n')
    expect(loadConfig(project.config, {}).postgres.connectionString).toBe('postgres://dotenv')
    expect(loadConfig(project.config, { FROM_DOTENV: 'proc' }).postgres.connectionString).toBe('proc')
  })

  test('parseDotEnv', () => {
    expect(parseDotEnv("export A=1\nB='two words'\nC=x # c\n\n#D=4")).toEqual({ A: '1', B: 'two words', C: 'x' })
  })
})

describe('migration files', () => {
  const base = (t: string) => ({ databaseUrl: 'x', migrations: { '001_a.toml': t } })

  test('a missing field names the file and the field', () => {
    const msg = loadError(base('[migration]\nname = "a"\nversion = 1\n[source]\ntable="t"\n[mapping]\nid="id"\n'))
    expect(msg).toBe('puffgres/migrations/001_a.toml: target: is required')
  })

  test('a bad type names the field', () => {
    const msg = loadError(base(migration({ name: 'a', table: 't' }).replace('version = 1', 'version = "one"')))
    expect(msg).toBe('puffgres/migrations/001_a.toml: migration.version: expected number, received string')
  })

  test('a bad membership predicate names the field', () => {
    const msg = loadError(base(migration({ name: 'a', table: 't', membership: "status = 'x' AND" })))
    expect(msg).toMatch(/^puffgres\/migrations\/001_a\.toml: mapping\.membership: /)
  })

  test('a bad namespace name', () => {
    const msg = loadError(base(migration({ name: 'a', table: 't', namespace: 'has space' })))
    expect(msg).toMatch(/target\.namespace: turbopuffer namespace names/)
  })

  test('a badly named file', () => {
    const msg = loadError({ databaseUrl: 'x', migrations: { 'items.toml': migration({ name: 'a', table: 't' }) } })
    expect(msg).toMatch(/items\.toml: migration files are named NNN_name\.toml/)
  })

  test('the same name and version twice', () => {
    const m = migration({ name: 'a', table: 't' })
    const msg = loadError({ databaseUrl: 'x', migrations: { '001_a.toml': m, '002_a.toml': m } })
    expect(msg).toMatch(/002_a\.toml: migration\.version: a version 1 is also in/)
  })

  test('two mappings writing one namespace', () => {
    const msg = loadError({
      databaseUrl: 'x',
      migrations: {
        '001_a.toml': migration({ name: 'a', table: 't', namespace: 'n' }),
        '002_b.toml': migration({ name: 'b', table: 'u', namespace: 'n' }),
      },
    })
    expect(msg).toMatch(/002_b\.toml: target\.namespace: "n" is also the namespace of mapping "a"/)
  })
})
