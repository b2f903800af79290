// monitoring/: the Grafana dashboard and the Prometheus rules shipped for `run --metrics-port` (issue 26). Every
// metric they name is one a live /metrics exposes; with Prometheus's promtool (Debian's `prometheus` package):
// the rules load, their unit tests (series that fire each alert and series that must not) pass, every dashboard
// query parses, and a live /metrics passes `promtool check metrics`. Without promtool these skip, except under CI=true.
import { beforeAll, describe, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'
import { inCI } from './harness/browser.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const RULES = 'monitoring/puffgres.rules.yml'
const RULE_TESTS = 'monitoring/puffgres.rules.test.yml'
const DASHBOARD = 'monitoring/grafana-dashboard.json'

const promtool = (process.env.PATH ?? '').split(':').map((d) => join(d, 'promtool')).find((p) => existsSync(p))

function run(args: string[], input?: string): { code: number | null; out: string } {
  const r = spawnSync(promtool!, args, { input, encoding: 'utf8' })
  return { code: r.status, out: `${r.stdout}${r.stderr}` }
}

/** The queries of every panel of the dashboard. */
function dashboardQueries(): string[] {
  const out: string[] = []
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk)
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'expr' && typeof x === 'string') out.push(x)
        else walk(x)
      }
    }
  }
  walk(JSON.parse(readFileSync(DASHBOARD, 'utf8')))
  return out
}

const metricNames = (text: string) => new Set([...text.matchAll(/\bpuffgres_[a-z0-9_]+/g)].map((m) => m[0]))

describe('the dashboard and the rules against a live /metrics', () => {
  let port = 0
  const pipe = usePipeline({
    name: 'monitoring',
    sql: 'CREATE TABLE items (id int PRIMARY KEY, name text)',
    migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
    stream: {
      metricsPort: 0,
      metricsHost: '127.0.0.1',
      onMetricsServer: (p) => (port = p),
      heartbeatIntervalMs: 200,
      statusSampleMs: 500,
    },
  })
  let metrics = ''

  beforeAll(async () => {
    await waitFor('the metrics server', () => port > 0)
    // some traffic, a retry and a 429, so that labelled series exist too
    pipe.server.failNext(1, 429)
    await pipe.db.sql`INSERT INTO items VALUES (1, 'a'), (2, 'b')`
    await waitFor('the writes and the slot gauges', async () => {
      metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
      return metrics.includes('puffgres_changes_applied_total{kind="upsert",mapping="items"} 2') &&
        metrics.includes('puffgres_dead_letters{mapping="items"} 0') &&
        /\npuffgres_replication_lag_bytes \d/.test(metrics)
    })
  })

  test('every metric the dashboard or a rule names is exposed', () => {
    const exposed = new Set<string>()
    for (const m of metrics.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      exposed.add(m[1])
      if (m[2] === 'histogram') { for (const s of ['_bucket', '_count', '_sum']) exposed.add(m[1] + s) }
    }
    const used = new Set([...metricNames(readFileSync(RULES, 'utf8')), ...metricNames(dashboardQueries().join('\n'))])
    expect(used.size).toBeGreaterThan(10)
    expect([...used].filter((n) => !exposed.has(n))).toEqual([])
    // and the dashboard covers the status page's subjects
    const queries = dashboardQueries().join('\n')
    for (
      const n of [
        'puffgres_replication_lag_seconds',
        'puffgres_replication_lag_bytes',
        'puffgres_changes_applied_total',
        'puffgres_dead_letters',
        'puffgres_sink_request_duration_seconds_bucket',
        'puffgres_sink_throttled_total',
        'puffgres_sink_paced_seconds_total',
        'puffgres_slot_failover',
      ]
    ) expect(queries).toContain(n)
  })

  test.skipIf(!!promtool)('promtool is installed (required under CI=true)', () => {
    const msg = 'no promtool on PATH: the Prometheus checks of monitoring/ are skipped (apt-get install prometheus)'
    if (inCI) throw new Error(msg)
    console.warn(`skip: ${msg}`)
  })

  test.skipIf(!promtool)('promtool check metrics: the live /metrics', () => {
    const r = run(['check', 'metrics'], metrics)
    expect(r.out).toBe('')
    expect(r.code).toBe(0)
  })

  test.skipIf(!promtool)('promtool check rules and test rules', () => {
    const check = run(['check', 'rules', RULES])
    expect(check.out).toContain('SUCCESS: 8 rules found')
    expect(check.code).toBe(0)
    const t = run(['test', 'rules', RULE_TESTS])
    expect(t.out).toContain('SUCCESS')
    expect(t.code).toBe(0)
    // every alert has a test that fires it and one that must not
    const alerts = [...readFileSync(RULES, 'utf8').matchAll(/- alert: (\S+)/g)].map((m) => m[1])
    const tests = readFileSync(RULE_TESTS, 'utf8')
    for (const a of alerts) {
      expect(tests).toMatch(new RegExp(`alertname: ${a}\\n(?!\\s+exp_alerts)`))
      expect(tests).toMatch(new RegExp(`alertname: ${a}\\n\\s+exp_alerts:`))
    }
  })

  test.skipIf(!promtool)('promtool: a rule that misfires is caught by the rule tests', () => {
    // the tests can fail: a NotStreaming rule that a standby alone would fire breaks them
    const dir = mkdtempSync(join(tmpdir(), 'puffgres-rules-'))
    writeFileSync(
      join(dir, 'puffgres.rules.yml'),
      readFileSync(RULES, 'utf8').replace('max by (slot) (puffgres_streaming', 'min by (slot) (puffgres_streaming'),
    )
    writeFileSync(join(dir, 'puffgres.rules.test.yml'), readFileSync(RULE_TESTS, 'utf8'))
    const r = run(['test', 'rules', join(dir, 'puffgres.rules.test.yml')])
    expect(r.code).not.toBe(0)
    expect(r.out).toContain('alertname: PuffgresNotStreaming')
  })

  test.skipIf(!promtool)(
    'promtool: the dashboard counts a dead letter once, though a hot standby reports it too',
    () => {
      // every process of a mapping (the active one and its hot standbys) reads the same queue: the dashboard's
      // dead-letter panels must not add their copies up
      const panels = JSON.parse(readFileSync(DASHBOARD, 'utf8')).panels as {
        title: string
        targets?: { expr: string }[]
      }[]
      const expr = (title: string) => {
        const p = panels.find((p) => p.title === title)
        if (!p?.targets?.length) throw new Error(`no panel "${title}" in the dashboard`)
        return p.targets[0].expr.replaceAll('$instance', '.*')
      }
      const series = ['a', 'b'].flatMap((instance) => [
        `      - series: 'puffgres_dead_letters{job="puffgres",instance="${instance}",mapping="items"}'\n        values: '3x5'`,
        `      - series: 'puffgres_dead_letters{job="puffgres",instance="${instance}",mapping="orders"}'\n        values: '1x5'`,
      ])
      const dir = mkdtempSync(join(tmpdir(), 'puffgres-dash-'))
      writeFileSync(join(dir, 'empty.rules.yml'), 'groups: []\n')
      writeFileSync(
        join(dir, 'dashboard.test.yml'),
        `rule_files: [empty.rules.yml]
tests:
  - interval: 1m
    input_series:
${series.join('\n')}
    promql_expr_test:
      - expr: ${JSON.stringify(expr('Dead letters'))}
        eval_time: 2m
        exp_samples:
          - labels: '{}'
            value: 4
      - expr: ${JSON.stringify(expr('Dead letters, by mapping'))}
        eval_time: 2m
        exp_samples:
          - labels: '{mapping="items"}'
            value: 3
          - labels: '{mapping="orders"}'
            value: 1
`,
      )
      const r = run(['test', 'rules', join(dir, 'dashboard.test.yml')])
      expect(r.out).toContain('SUCCESS')
      expect(r.code).toBe(0)
    },
  )

  test.skipIf(!promtool)('promtool: every dashboard query is valid PromQL', () => {
    // Grafana's variables as Prometheus would see them after substitution, each query as a recording rule
    const rules = dashboardQueries().map((q, i) =>
      `      - record: dashboard_query_${i}\n        expr: ${
        JSON.stringify(q.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*'))
      }`
    )
    const dir = mkdtempSync(join(tmpdir(), 'puffgres-dash-'))
    writeFileSync(join(dir, 'q.yml'), `groups:\n  - name: dashboard\n    rules:\n${rules.join('\n')}\n`)
    const r = run(['check', 'rules', join(dir, 'q.yml')])
    expect(r.out).toContain(`SUCCESS: ${rules.length} rules found`)
  })
})
