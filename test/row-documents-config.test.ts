// The configuration shapes of a row's documents (src/config/row-documents.ts): namespace templates, the rendered
// namespace of a row (pipeline/row-namespace.ts rowNamespace), [mapping.chunking]; and that puffgres.toml refuses a bad
// one with one line naming file and field, and loads a good one (the template in Mapping.namespaceTemplate).
import { afterEach, describe, expect, test } from 'bun:test'
import { ConfigError } from '../src/config/errors.ts'
import { loadConfig } from '../src/config/load.ts'
import {
  checkTemplateColumns,
  chunkingSchema,
  literalPrefix,
  namespacesMayCollide,
  parseNamespaceTemplate,
  renderNamespace,
  templatePattern,
} from '../src/config/row-documents.ts'
import { rowNamespace } from '../src/pipeline/row-namespace.ts'
import { makeProject, migration, type Project } from './harness/project.ts'

describe('namespace templates', () => {
  test('literal text and {column} placeholders', () => {
    expect(parseNamespaceTemplate('docs_{workspace_id}')).toEqual({
      text: 'docs_{workspace_id}',
      parts: [{ literal: 'docs_' }, { column: 'workspace_id' }],
      columns: ['workspace_id'],
    })
    expect(parseNamespaceTemplate('{region}_{org_id}.v2').columns).toEqual(['region', 'org_id'])
    expect(parseNamespaceTemplate('{a}-{a}').columns).toEqual(['a'])
    expect(parseNamespaceTemplate('plain.name-1').columns).toEqual([])
  })

  test('malformed templates are refused with the reason', () => {
    const err = (t: string) => {
      try {
        parseNamespaceTemplate(t)
      } catch (e) {
        return (e as Error).message
      }
      return 'accepted'
    }
    expect(err('docs_{workspace_id')).toBe('"{" without "}" in "docs_{workspace_id"')
    expect(err('docs_}x')).toBe('"}" without "{" in "docs_}x"')
    expect(err('docs_{}')).toMatch(/a placeholder names one column/)
    expect(err('docs_{a{b}}')).toMatch(/a placeholder names one column/)
    expect(err('{a}{b}')).toMatch(/put a separator between \{a\} and \{b\}/)
    expect(err('has space_{a}')).toMatch(/^turbopuffer namespace names are \[A-Za-z0-9-_.\]\{1,128\}; " " in/)
    expect(err('n'.repeat(129))).toMatch(/^turbopuffer namespace names are/)
    expect(err('')).toBe('must not be empty')
    expect(err(`{${'c'.repeat(64)}}`)).toMatch(/longer than a PostgreSQL column name/)
  })

  test('placeholder columns must be columns of the mapping', () => {
    const t = parseNamespaceTemplate('docs_{workspace_id}')
    expect(checkTemplateColumns(t, ['id', 'workspace_id'])).toBeUndefined()
    expect(checkTemplateColumns(t, ['id', 'title'])).toBe('{workspace_id} names no column of the mapping (id, title)')
  })

  test("a row's namespace: prefix and values; NULL, odd types and invalid names are errors naming the fix", () => {
    const t = parseNamespaceTemplate('docs_{workspace_id}')
    const row = (v: unknown) => () => v
    expect(renderNamespace(t, '', row('acme'))).toEqual({ ok: true, namespace: 'docs_acme' })
    expect(renderNamespace(t, 'dev_', row(42))).toEqual({ ok: true, namespace: 'dev_docs_42' })
    expect(renderNamespace(t, '', row(18446744073709551615n))).toEqual({
      ok: true,
      namespace: 'docs_18446744073709551615',
    })
    const bad = (v: unknown, prefix = '') => {
      const r = renderNamespace(t, prefix, row(v))
      return r.ok ? 'accepted' : r.error
    }
    expect(bad(null)).toBe(
      'namespace "docs_{workspace_id}": workspace_id is NULL, so the row has no namespace; make the column NOT NULL ' +
        'or leave such rows out with a membership predicate (workspace_id IS NOT NULL)',
    )
    expect(bad(undefined)).toMatch(/workspace_id is NULL/)
    // an empty value would name the template's bare prefix, which no listing of the mapping's namespaces finds
    // (TRUNCATE, verify, status): refused as NULL is
    expect(bad('')).toBe(
      'namespace "docs_{workspace_id}": workspace_id is empty, so the row has no namespace; leave such rows out ' +
        "with a membership predicate (workspace_id <> '')",
    )
    expect(bad('a b')).toMatch(
      /^namespace "docs_\{workspace_id\}" gives "docs_a b", not a valid turbopuffer namespace name .*workspace_id must hold only letters, digits/,
    )
    expect(bad('ü')).toMatch(/gives "docs_ü", not a valid/)
    expect(bad('x'.repeat(124))).toMatch(/not a valid turbopuffer namespace name/)
    expect(bad('x'.repeat(123))).toBe('accepted')
    expect(bad('x'.repeat(119), 'dev_')).toBe('accepted')
    expect(bad('x'.repeat(120), 'dev_')).toMatch(/fit 128 characters/)
    expect(bad(1.5)).toMatch(/workspace_id is number, not text or a whole number/)
    expect(bad(['a'])).toMatch(/workspace_id is an array/)
    expect(bad(true)).toMatch(/is boolean/)
    // several placeholders
    const two = parseNamespaceTemplate('{region}_{org}')
    const values: Record<string, unknown> = { region: 'eu', org: 7 }
    expect(renderNamespace(two, '', (c) => values[c])).toEqual({ ok: true, namespace: 'eu_7' })
  })
})

describe('[mapping.chunking]', () => {
  test('defaults and checks', () => {
    expect(chunkingSchema.parse({ source: 'body', size: 2000 })).toEqual({
      source: 'body',
      size: 2000,
      overlap: 0,
      boundaries: ['paragraph', 'sentence', 'word'],
      attribute: 'chunk',
    })
    const issue = (v: unknown) => {
      const r = chunkingSchema.safeParse(v)
      return r.success ? 'accepted' : `${r.error.issues[0].path.join('.')}: ${r.error.issues[0].message}`
    }
    expect(issue({ source: 'body', size: 100, overlap: 100 })).toBe('overlap: must be less than size (100), got 100')
    expect(issue({ source: 'body', size: 0 })).toMatch(/^size: /)
    expect(issue({ source: [], size: 10 })).toMatch(/^source: /)
    expect(issue({ source: 'b', size: 10, boundaries: ['line'] })).toMatch(/^boundaries.0: /)
    expect(issue({ source: 'b', size: 10, boundaries: ['word', 'word'] })).toBe('boundaries: names a boundary twice')
    expect(issue({ source: 'b', size: 10, sise: 3 })).toMatch(/sise/)
    expect(issue({ source: ['title', 'body'], size: 10, overlap: 9, boundaries: [] })).toBe('accepted')
  })
})

describe('puffgres.toml', () => {
  let project: Project | undefined
  afterEach(() => project?.remove())
  const env = { DATABASE_URL: 'postgres://x@localhost/db' }
  const loadError = (m: string): string => {
    project = makeProject({ databaseUrl: 'x', migrations: { '001_a.toml': m } })
    try {
      loadConfig(project.config, env)
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError)
      return (err as Error).message
    }
    throw new Error('expected a ConfigError')
  }
  const file = 'puffgres/migrations/001_a.toml'
  const chunking = '[mapping.chunking]\nsource = "body"\nsize = 1000\noverlap = 100\n'

  test('a template is checked, then loads (PUFFGRES_BASE_NAMESPACE in front); rowNamespace renders a row', () => {
    expect(loadError(migration({ name: 'a', table: 't', namespace: 'docs_{workspace_id' }))).toBe(
      `${file}: target.namespace: "{" without "}" in "docs_{workspace_id"`,
    )
    expect(loadError(migration({ name: 'a', table: 't', columns: ['title'], namespace: 'docs_{ws}' }))).toBe(
      `${file}: target.namespace: {ws} names no column of the mapping (id, title)`,
    )
    project = makeProject({
      databaseUrl: 'x',
      migrations: { '001_a.toml': migration({ name: 'a', table: 't', namespace: '{region}_docs_{ws}' }) },
    })
    const m = loadConfig(project.config, { ...env, PUFFGRES_BASE_NAMESPACE: 'prod_' }).mappings[0]
    expect(m.namespace).toBe('prod_{region}_docs_{ws}')
    expect(m.namespaceTemplate!.columns).toEqual(['region', 'ws'])
    expect(literalPrefix(m.namespaceTemplate!)).toBe('prod_')
    expect(rowNamespace(m, { id: 1, region: 'eu', ws: 42 }, 1)).toEqual({ ok: true, namespace: 'prod_eu_docs_42' })
    expect(rowNamespace(m, { id: 1, region: 'eu', ws: null }, 1)).toEqual({
      ok: false,
      error: 'mapping a: row 1 (region = "eu", ws = NULL): namespace "prod_{region}_docs_{ws}": ws is NULL, so the ' +
        'row has no namespace; make the column NOT NULL or leave such rows out with a membership predicate ' +
        '(ws IS NOT NULL)',
    })
    const bad = rowNamespace(m, { id: 'k', region: 'e u', ws: 1 }, 'k')
    expect(bad.ok ? '' : bad.error).toMatch(/^mapping a: row "k" \(region = "e u", ws = 1\): namespace /)
    expect(bad.ok ? '' : bad.error).toContain('map the values in a transform or route on another column')
    // a fixed name: no template, the name as it was
    project.remove()
    project = makeProject({ databaseUrl: 'x', migrations: { '001_a.toml': migration({ name: 'a', table: 't' }) } })
    const fixed = loadConfig(project.config, env).mappings[0]
    expect(fixed.namespaceTemplate).toBeUndefined()
    expect(rowNamespace(fixed, undefined)).toEqual({ ok: true, namespace: fixed.namespace })
  })

  test('a template whose every name is over 128 characters (PUFFGRES_BASE_NAMESPACE in front) is refused', () => {
    project = makeProject({
      databaseUrl: 'x',
      migrations: { '001_a.toml': migration({ name: 'a', table: 't', namespace: 'docs_{ws}' }) },
    })
    const fits = loadConfig(project.config, { ...env, PUFFGRES_BASE_NAMESPACE: 'p'.repeat(122) }).mappings[0]
    expect(rowNamespace(fits, { id: 1, ws: 7 }, 1)).toEqual({ ok: true, namespace: 'p'.repeat(122) + 'docs_7' })
    expect(() => loadConfig(project!.config, { ...env, PUFFGRES_BASE_NAMESPACE: 'p'.repeat(123) })).toThrow(
      'puffgres/migrations/001_a.toml: target.namespace: "docs_{ws}" with PUFFGRES_BASE_NAMESPACE in front renders ' +
        'names of 129+ characters, over the 128 turbopuffer takes; shorten the literal text or the prefix',
    )
  })

  test('two mappings whose namespaces could meet are refused', () => {
    project = makeProject({
      databaseUrl: 'x',
      migrations: {
        '001_a.toml': migration({ name: 'a', table: 't', namespace: 'docs_{ws}' }),
        '002_b.toml': migration({ name: 'b', table: 'u', namespace: 'docs_archive' }),
      },
    })
    expect(() => loadConfig(project!.config, env)).toThrow(
      'puffgres/migrations/002_b.toml: target.namespace: "docs_archive" could name the same namespaces as ' +
        '"docs_{ws}" (mapping "a")',
    )
    project.remove()
    project = makeProject({
      databaseUrl: 'x',
      migrations: {
        '001_a.toml': migration({ name: 'a', table: 't', namespace: 'docs_{ws}' }),
        '002_b.toml': migration({ name: 'b', table: 'u', namespace: 'notes_{ws}' }),
      },
    })
    expect(loadConfig(project.config, env).mappings.map((m) => m.namespace)).toEqual(['docs_{ws}', 'notes_{ws}'])
  })

  test('[mapping.chunking] is checked, and a valid one loads', () => {
    expect(loadError(migration({ name: 'a', table: 't', extra: chunking.replace('100\n', '1000\n') }))).toBe(
      `${file}: mapping.chunking.overlap: must be less than size (1000), got 1000`,
    )
    expect(loadError(migration({ name: 'a', table: 't', columns: ['title'], extra: chunking }))).toBe(
      `${file}: mapping.chunking.source: "body" is not a column of the mapping (id, title)`,
    )
    expect(loadError(migration({ name: 'a', table: 't', extra: chunking + 'attribute = "_puffgres_row"\n' }))).toBe(
      `${file}: mapping.chunking.attribute: "_puffgres_row" is reserved; name the chunk text attribute otherwise`,
    )
    expect(
      loadError(migration({ name: 'a', table: 't', extra: chunking + '[mapping.embedding]\nsource = "body"\n' })),
    ).toBe(
      `${file}: mapping.embedding.source: with [mapping.chunking] each chunk is embedded: set source = "chunk" ` +
        '(the chunk attribute)',
    )
    // wired: a valid chunking loads (test/chunked-stream.test.ts streams it)
    project = makeProject({
      databaseUrl: 'x',
      migrations: {
        '001_a.toml': migration({ name: 'a', table: 't', extra: chunking + '[mapping.embedding]\nsource = "chunk"\n' }),
      },
    })
    expect(loadConfig(project.config, env).mappings[0].chunking).toEqual({
      source: 'body',
      size: 1000,
      overlap: 100,
      boundaries: ['paragraph', 'sentence', 'word'],
      attribute: 'chunk',
    })
  })

  test('documents = "many" needs a transform and goes without [mapping.chunking]', () => {
    expect(loadError(migration({ name: 'a', table: 't', extra: 'documents = "many"' }))).toBe(
      `${file}: mapping.documents: "many" needs a transform that returns { type: 'upsert', documents: [...] }`,
    )
    expect(loadError(migration({ name: 'a', table: 't', transform: 'x.ts', extra: 'documents = "many"\n' + chunking })))
      .toBe(`${file}: mapping.documents: [mapping.chunking] makes the documents of a row: leave documents = "many" out`)
    expect(loadError(migration({ name: 'a', table: 't', extra: 'documents = "few"' })))
      .toMatch(/^puffgres\/migrations\/001_a.toml: mapping.documents: /)
  })

  test('a fixed namespace loads as before', () => {
    project = makeProject({ databaseUrl: 'x', migrations: { '001_a.toml': migration({ name: 'a', table: 't' }) } })
    expect(loadConfig(project.config, { ...env, PUFFGRES_BASE_NAMESPACE: 'dev_' }).mappings[0].namespace).toBe('dev_a')
  })
})

describe('namespaces of several mappings', () => {
  const t = parseNamespaceTemplate
  test('the names a template renders, and its listing prefix', () => {
    expect(literalPrefix(t('docs_{ws}.v2'))).toBe('docs_')
    expect(literalPrefix(t('{ws}_docs'))).toBe('')
    expect(literalPrefix(t('fixed.name'))).toBe('fixed.name')
    const p = templatePattern(t('docs_{ws}.v2'), 'dev_')
    expect(['dev_docs_acme.v2', 'dev_docs_a.b-c.v2'].map((n) => p.test(n))).toEqual([true, true])
    expect(['docs_acme.v2', 'dev_docs_.v2', 'dev_docs_acmeXv2', 'dev_docs_a b.v2'].map((n) => p.test(n))).toEqual([
      false,
      false,
      false,
      false,
    ])
  })

  test('mappings whose namespaces could meet are told apart from those that cannot', () => {
    const pairs: Array<[string, string, boolean]> = [
      ['docs', 'docs', true],
      ['docs', 'notes', false],
      ['docs_{ws}', 'docs_archive_{ws}', true],
      ['docs_{ws}', 'notes_{ws}', false],
      ['docs_{ws}', 'docs_7', true],
      ['docs_{ws}', 'docs', false],
      ['docs_{ws}', 'docsx', false],
      ['{ws}_docs', 'notes_{ws}', true],
      ['{ws}_docs', 'anything', false],
      ['{ws}_docs', 'a_docs', true],
    ]
    for (const [a, b, collide] of pairs) {
      expect({ a, b, collide: namespacesMayCollide(t(a), t(b)) }).toEqual({ a, b, collide })
      expect({ a: b, b: a, collide: namespacesMayCollide(t(b), t(a)) }).toEqual({ a: b, b: a, collide })
    }
  })
})
