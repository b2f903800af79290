// The status page of `run --metrics-port` (issue 26), against a live stream on a throwaway PostgreSQL and the local
// turbopuffer server: what it shows (mappings, a lag that moves while the stream is held back, a dead letter
// appearing), what it never serves (a key or password planted in the config, row values), where it listens; then
// the same in headless Chromium, as a person sees it (phone width too), with a screenshot.
//   PUFFGRES_UPDATE_SCREENSHOT=1 bun test test/status-page.test.ts   also writes docs/status-page.png (README)
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { type AddressInfo, createServer, type Socket } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'
import postgres from 'postgres'
import { startMetricsServer } from '../src/stream/metrics-server.ts'
import { deadLetterKind } from '../src/stream/dead-letter-kind.ts'
import { quantile, StatusPage } from '../src/stream/status-page.ts'
import { SampleRing } from '../src/stream/sample-ring.ts'
import { StreamMonitor } from '../src/stream/stream-monitor.ts'
import { findChromium, inCI, openPage, type Page } from './harness/browser.ts'
import { startCli } from './harness/cli-child.ts'
import { freePort } from './harness/pg.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const API_KEY = 'tpuf_PLANTEDKEY_7f3a9c41d2'
const DB_PASSWORD = 'PLANTEDPASSWORD_91be'
const ROW_VALUE = 'ROWVALUE_c0ffee_secret'
const BAD_ROW_VALUE = 'bad-ROWVALUE_in_dead_letter'
const SECRETS = [API_KEY, DB_PASSWORD, ROW_VALUE, BAD_ROW_VALUE, 'ROWVALUE']

// Throws for names starting with "bad", quoting the row's value in its error (as real transforms do): the dead-letter
// queue keeps that text; the page must show only its kind.
const TRANSFORM = `export default function (event) {
  if (event.type === 'delete') return { type: 'delete' }
  if (event.new.name.startsWith('bad')) throw new Error('cannot handle ' + event.new.name)
  return { type: 'upsert', attributes: { name: event.new.name, secret: event.new.secret } }
}
`

describe('the status page and what the metrics server serves', () => {
  let port = 0
  const pipe = usePipeline({
    name: 'statuspage',
    sql: `CREATE TABLE items (id int PRIMARY KEY, name text, secret text);
      CREATE TABLE orders (id int PRIMARY KEY, note text)`,
    migrations: {
      '001_items.toml': migration({ name: 'items', table: 'items', transform: 'transforms/items.ts' }),
      '002_orders.toml': migration({ name: 'orders', table: 'orders', namespace: 'shop-orders' }),
    },
    files: { 'transforms/items.ts': TRANSFORM },
  })

  beforeAll(async () => {
    // plant the secrets in the config the stream runs with: the API key, and a password in the connection string
    // (the test cluster trusts local connections, so the password is carried and ignored)
    const config = readFileSync(pipe.project.config, 'utf8')
      .replace('api_key = "test-key"', `api_key = "${API_KEY}"`)
      .replace('postgres://postgres@', `postgres://postgres:${DB_PASSWORD}@`)
    expect(config).toContain(API_KEY)
    expect(config).toContain(DB_PASSWORD)
    writeFileSync(pipe.project.config, config)
    await pipe.startStream({
      metricsPort: 0,
      metricsHost: '127.0.0.1',
      onMetricsServer: (p) => (port = p),
      statusSampleMs: 500,
      heartbeatIntervalMs: 200,
      maxLagSeconds: 1,
    })
    await waitFor('the metrics server', () => port > 0)
  })

  const url = (path = '/') => `http://127.0.0.1:${port}${path}`
  const page = async () => {
    const r = await fetch(url('/'))
    expect(r.status).toBe(200)
    return await r.text()
  }
  /** the text of the element with this id (tags dropped) */
  const card = (html: string, id: string) => {
    const m = new RegExp(`id="${id}"[^>]*>([\\s\\S]*?)</div>`).exec(html)
    return m ? m[1].replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim() : undefined
  }
  const lagSeconds = (html: string) => {
    const m = /([\d.]+) (ms|s|min)$/.exec(card(html, 'lag-seconds') ?? '')
    if (!m) throw new Error(`no lag on the page: ${card(html, 'lag-seconds')}`)
    return Number(m[1]) * (m[2] === 'ms' ? 0.001 : m[2] === 'min' ? 60 : 1)
  }

  test('shows every mapping and namespace, documents, the slot', async () => {
    await pipe.db.sql`INSERT INTO items VALUES (1, 'one', ${ROW_VALUE}), (2, 'two', ${ROW_VALUE})`
    await pipe.db.sql`INSERT INTO orders VALUES (7, ${ROW_VALUE})`
    await waitFor('the rows written', () => pipe.docs('items').size === 2 && pipe.docs('shop-orders').size === 1)
    const html: string = await waitFor('the documents on the page', async () => {
      const h = await page()
      return /<td>items<\/td><td>items<\/td><td>public\.items<\/td><td class="num">[^<]*<\/td><td class="num">2<\/td>/
          .test(h)
        ? h
        : ''
    })
    expect(html).toMatch(/<td>orders<\/td><td>shop-orders<\/td><td>public\.orders<\/td>/)
    expect(html).toContain('<meta name="viewport" content="width=device-width,initial-scale=1">')
    expect(html).toMatch(/<meta http-equiv="refresh" content="\d+">/)
    expect(card(html, 'slot')).toContain('puffgres')
    const failover = (await pipe.db.sql<{ v: number }[]>`SELECT current_setting('server_version_num')::int AS v`)[0]
        .v >= 170000
      ? 'yes' // run asks for a failover slot by default ([stream] failover_slot)
      : 'no (PostgreSQL before 17)'
    // the slot is read from PostgreSQL (the first read may precede the slot's creation)
    await waitFor(`failover: ${failover}`, async () => card(await page(), 'failover')?.includes(failover))
    expect(html).not.toMatch(/<script|https?:\/\/(?!127\.0\.0\.1)/) // nothing loaded from anywhere, no script
    const res = await fetch(url('/'))
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'")
  })

  test('the lag moves while turbopuffer holds the stream back, and comes back to 0', async () => {
    expect(lagSeconds(await page())).toBe(0)
    pipe.server.setLatency(5000)
    try {
      await pipe.db.sql`INSERT INTO items VALUES (3, 'three', 'x')`
      const first = await waitFor('a lag on the page', async () => {
        const l = lagSeconds(await page())
        return l >= 0.5 ? l : 0
      })
      const later = await waitFor('the lag to grow', async () => {
        const l = lagSeconds(await page())
        return l >= first + 0.5 ? l : 0
      })
      expect(later).toBeGreaterThan(first)
      // the chart has points above 0 (the polyline is the lag chart's, the first one)
      const html = await page()
      const points = /<polyline class="line" points="([^"]*)"/.exec(html)![1].trim().split(' ')
      expect(points.length).toBeGreaterThan(2)
    } finally {
      pipe.server.setLatency(0)
    }
    await waitFor('the lag back to 0', async () => lagSeconds(await page()) === 0)
  }, 40_000)

  test('a dead letter appears with its mapping, id and kind; never its row value or error text', async () => {
    await pipe.db.sql`INSERT INTO items VALUES (41, ${BAD_ROW_VALUE}, ${ROW_VALUE})`
    const html = await waitFor('the dead letter on the page', async () => {
      const h = await page()
      return card(h, 'dead-letter-count') === 'dead letters 1' && h
    })
    // the queue itself keeps the error text with the row's value: the page must not repeat it
    const [dl] = await pipe.deadLetters('items')
    expect(dl.error).toContain(BAD_ROW_VALUE)
    expect(html).toMatch(
      /<td>items<\/td><td>41<\/td><td>transform threw<\/td><td class="num">1<\/td><td class="num">\d+<\/td>/,
    )
    const m = await (await fetch(url('/metrics'))).text()
    expect(m).toContain('puffgres_dead_letters{mapping="items"} 1')
    expect(m).toContain('puffgres_dead_letters{mapping="orders"} 0')
  })

  test("the page counts this process's mappings only, and escapes what it shows", async () => {
    // a dead letter of a mapping this process does not stream (another process of a scale-out, or a mapping since
    // removed), and one of ours whose document id is markup
    const hostile = '<img src=x onerror=alert(1)>'
    await pipe.db.sql`INSERT INTO __puffgres_dlq (mapping, doc_id, error)
      VALUES ('elsewhere', 'ELSEWHERE_ID', 'x'), ('orders', ${hostile}, 'x')`
    try {
      const html = await waitFor('the orders dead letter on the page', async () => {
        const h = await page()
        return /<td>orders<\/td><td>shop-orders<\/td><td>public\.orders<\/td>.*<td class="num">1<\/td><\/tr>/.test(h)
          ? h
          : ''
      })
      expect(card(html, 'dead-letter-count')).toBe('dead letters 2')
      expect(html).not.toContain('ELSEWHERE_ID')
      expect(html).not.toContain('elsewhere')
      expect(html).toContain('<td>&lt;img src=x onerror=alert(1)&gt;</td>')
      expect(html).not.toContain('<img')
      const m = await (await fetch(url('/metrics'))).text()
      expect(m).not.toContain('elsewhere')
    } finally {
      await pipe.db.sql`DELETE FROM __puffgres_dlq WHERE mapping = 'elsewhere' OR doc_id = ${hostile}`
    }
    await waitFor('the count back to 1', async () => card(await page(), 'dead-letter-count') === 'dead letters 1')
  })

  test('a read of the page that PostgreSQL blocks (a lock on the queue) is cancelled, not left holding a connection', async () => {
    const application = 'puffgres-status-lock-test'
    const sql = postgres(pipe.db.url, { max: 2, connection: { application_name: application } })
    const status = new StatusPage({
      monitor: new StreamMonitor(),
      sql,
      slot: 'puffgres',
      publication: 'p',
      mappings: [{ name: 'items', namespace: 'items', table: 'public.items' }],
      dbWaitMs: 300,
      statementTimeoutMs: 1_000,
    })
    const locker = await pipe.db.sql.reserve()
    try {
      await locker`BEGIN`
      await locker`LOCK TABLE __puffgres_dlq IN ACCESS EXCLUSIVE MODE`
      const html = await status.render()
      expect(html).toMatch(/Dead letters and slot: no answer from PostgreSQL in \d+ s/)
      const waiting = async () =>
        (await pipe.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE application_name = ${application} AND wait_event_type = 'Lock'`)[0].n
      expect(await waiting()).toBe(1)
      // PostgreSQL gives the read up after the statement timeout, while the lock is still held
      await waitFor('the blocked read cancelled', async () => (await waiting()) === 0, 10_000)
      expect(await status.render()).toContain('Dead letters and slot: cannot read PostgreSQL')
    } finally {
      await locker`ROLLBACK`
      locker.release()
      await status.stop()
      await sql.end({ timeout: 1 })
    }
  })

  test('nothing served names a planted key or password, or a row value', async () => {
    pipe.server.failNext(1, 429)
    await pipe.db.sql`INSERT INTO orders VALUES (8, ${ROW_VALUE})`
    await waitFor(
      'the 429 counted',
      async () => /puffgres_sink_throttled_total 1\b/.test(await (await fetch(url('/metrics'))).text()),
    )
    // the 429 is counted once on the page: as a 429, not also as an error
    const html = await page()
    expect(card(html, 'throttled')).toBe('429s (too many requests) 1 1 in 5 min')
    expect(card(html, 'errors')).toBe('turbopuffer errors (not 429) 0 0 in 5 min')
    for (const path of ['/', '/metrics', '/healthz', '/nope', '/?x=1', '/metrics/../']) {
      for (const method of ['GET', 'HEAD', 'POST']) {
        const r = await fetch(url(path), { method })
        const body = await r.text()
        const head = JSON.stringify([...r.headers])
        for (const s of SECRETS) {
          expect(body).not.toContain(s)
          expect(head).not.toContain(s)
        }
      }
    }
    // and the logs of the run say where the page is, without the secrets either
    const logs = pipe.stream.logs.join('\n')
    expect(logs).toContain('serving the status page')
    expect(logs).not.toContain(API_KEY)
    expect(logs).not.toContain(DB_PASSWORD)
  })

  const chromium = findChromium()
  describe('in headless Chromium', () => {
    let browser: Page | undefined
    beforeAll(async () => {
      if (chromium) browser = await openPage(chromium)
    })
    afterAll(async () => await browser?.close())

    test.skipIf(!!chromium)('chromium is installed (required under CI=true)', () => {
      const msg = 'no chromium on PATH: the browser test of the status page is skipped (apt-get install chromium)'
      if (inCI) throw new Error(msg)
      console.warn(`skip: ${msg}`)
    })

    test.skipIf(!chromium)('a person sees the mappings, the lag, the dead letter; it refreshes itself', async () => {
      const b = browser!
      await b.viewport(1100, 900)
      await b.goto(url('/'))
      const text = await b.evaluate<string>('document.body.innerText')
      for (const s of ['items', 'shop-orders', 'public.orders', 'transform threw', 'failover slot', 'lag']) {
        expect(text).toContain(s)
      }
      for (const s of SECRETS) expect(text).not.toContain(s)
      // the charts are drawn: three SVGs with a visible line
      const charts = await b.evaluate<{ w: number; h: number; n: number }[]>(
        `[...document.querySelectorAll('figure.chart svg')].map((s) => {
          const r = s.getBoundingClientRect()
          return { w: r.width, h: r.height, n: s.querySelector('polyline').points.numberOfItems }
        })`,
      )
      expect(charts.length).toBe(3)
      for (const c of charts) expect(c.w > 200 && c.h > 100 && c.n > 2).toBe(true)

      // the lag, as rendered, moves while turbopuffer is slow
      // the card's value alone ('350 ms' contains '0 ms' too)
      const lagText = () => b.evaluate<string>(`document.querySelector('#lag-seconds b').innerText`)
      await waitFor('no lag in the browser', async () => {
        await b.goto(url('/'))
        return (await lagText()).trim() === '0 ms'
      })
      // 5 s: long enough for a page load to see a lag of a second or more on a loaded machine
      pipe.server.setLatency(5000)
      try {
        await pipe.db.sql`INSERT INTO items VALUES (5, 'five', 'y')`
        await waitFor('the browser to show a lag', async () => {
          await b.goto(url('/'))
          return /^\d+(\.\d)? s$/.test((await lagText()).trim())
        })
      } finally {
        pipe.server.setLatency(0)
      }
      // a second dead letter appears in the browser
      await pipe.db.sql`INSERT INTO items VALUES (42, 'bad', 'z')`
      await waitFor('the second dead letter in the browser', async () => {
        await b.goto(url('/'))
        return (await b.evaluate<string>(`document.getElementById('dead-letter-count').innerText`)).includes('2')
      })
      const rows = await b.evaluate<string[]>(
        `[...document.querySelectorAll('#dead-letters tbody tr')].map((r) => r.innerText.replace(/\\s+/g, ' '))`,
      )
      expect(rows.some((r) => r.includes('items 42 transform threw'))).toBe(true)
      // it reloads by itself (meta refresh), with no request from the test
      const before = await b.evaluate<string>(`document.querySelector('main > p').innerText`)
      await b.nextNavigation(15_000)
      await waitFor(
        'the refreshed page',
        async () =>
          (await b.evaluate<string>(`document.readyState`)) === 'complete' &&
          (await b.evaluate<string>(`document.querySelector('main > p')?.innerText ?? ''`)) !== before,
      )
      await waitFor('the lag back to 0', async () => {
        await b.goto(url('/'))
        return (await lagText()).trim() === '0 ms'
      })
    }, 60_000)

    test.skipIf(!chromium)('readable on a phone: no sideways scrolling of the page; a screenshot', async () => {
      const b = browser!
      await b.viewport(390, 844, true)
      await b.goto(url('/'))
      const fit = await b.evaluate<{ page: number; view: number; font: number }>(
        `({ page: document.documentElement.scrollWidth, view: window.innerWidth,
            font: parseFloat(getComputedStyle(document.body).fontSize) })`,
      )
      expect(fit.view).toBe(390)
      expect(fit.page).toBeLessThanOrEqual(fit.view)
      expect(fit.font).toBeGreaterThanOrEqual(14)
      const dir = mkdtempSync(join(tmpdir(), 'puffgres-status-'))
      writeFileSync(join(dir, 'status-page-phone.png'), await b.screenshot())
      // the desktop view, whole page, for README
      await b.viewport(1100, 900)
      await b.goto(url('/'))
      const height = await b.evaluate<number>('document.documentElement.scrollHeight')
      await b.viewport(1100, Math.min(4000, height))
      const png = await b.screenshot()
      expect([...png.slice(1, 4)].map((c) => String.fromCharCode(c)).join('')).toBe('PNG')
      expect(png.length).toBeGreaterThan(20_000)
      writeFileSync(join(dir, 'status-page.png'), png)
      if (process.env.PUFFGRES_UPDATE_SCREENSHOT === '1') writeFileSync('docs/status-page.png', png)
      console.log(`status page screenshots: ${dir}`)
    }, 30_000)
  })
})

const otherAddresses = () =>
  Object.values(networkInterfaces()).flat()
    .filter((a) => a && a.family === 'IPv4' && !a.internal).map((a) => a!.address)

describe('where the metrics server listens', () => {
  const pipe = usePipeline({
    name: 'statushost',
    sql: 'CREATE TABLE notes (id int PRIMARY KEY, body text)',
    migrations: { '001_notes.toml': migration({ name: 'notes', table: 'notes' }) },
  })

  test('puffgres run --metrics-port without --metrics-host: the page on 127.0.0.1 only', async () => {
    const port = await freePort()
    const c = startCli(['-c', pipe.project.config, 'run', '--metrics-port', String(port)], { cwd: pipe.project.dir })
    try {
      await waitFor('the status page served', () => /serving the status page/.test(c.output()), 30_000)
      expect(c.output()).toMatch(/"host":"127\.0\.0\.1"/)
      const page = await waitFor('the page', async () => {
        const r = await fetch(`http://127.0.0.1:${port}/`)
        const t = await r.text()
        return r.status === 200 && t.includes('<td>notes</td>') ? t : ''
      })
      expect(page).toContain('public.notes')
      for (const a of otherAddresses()) {
        const r = await fetch(`http://${a}:${port}/`).then(() => 'reached', () => 'refused')
        expect(`${a}: ${r}`).toBe(`${a}: refused`)
      }
    } finally {
      c.kill('SIGTERM')
      await c.done
    }
  }, 60_000)

  test('127.0.0.1 by default: not reachable on the machine’s other addresses', async () => {
    const server = await startMetricsServer(new StreamMonitor(), { port: 0 })
    try {
      expect((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(200)
      for (const a of otherAddresses()) {
        const r = await fetch(`http://${a}:${server.port}/metrics`).then(() => 'reached', () => 'refused')
        expect(`${a}: ${r}`).toBe(`${a}: refused`)
      }
    } finally {
      await server.stop()
    }
  })

  test('--metrics-host 0.0.0.0 listens on every interface', async () => {
    const server = await startMetricsServer(new StreamMonitor(), { port: 0, hostname: '0.0.0.0' })
    try {
      for (const a of [...otherAddresses(), '127.0.0.1']) {
        expect((await fetch(`http://${a}:${server.port}/healthz`)).status).toBe(503)
      }
    } finally {
      await server.stop()
    }
  })
})

describe('status page parts', () => {
  test('the sample ring keeps the newest samples up to its capacity', () => {
    const r = new SampleRing<number>(3)
    expect(r.toArray()).toEqual([])
    for (let i = 1; i <= 7; i++) r.push(i)
    expect(r.toArray()).toEqual([5, 6, 7])
    expect(r.size).toBe(3)
    expect(r.last()).toBe(7)
    expect(() => new SampleRing(0)).toThrow()
  })

  test('the history is bounded: one hour, at most 720 samples, whatever the sample interval', () => {
    const page = (sampleMs: number) =>
      new StatusPage({
        monitor: new StreamMonitor(),
        sql: postgres('postgres://127.0.0.1:1/none'),
        slot: 's',
        publication: 'p',
        mappings: [],
        sampleMs,
      })
    expect(page(10_000).ring.capacity).toBe(360)
    expect(page(500).ring.capacity).toBe(720)
    expect(page(1).ring.capacity).toBe(720)
  })

  test('PostgreSQL unreachable: the page still answers, and says the dead letters and slot are unknown', async () => {
    const sql = postgres(`postgres://postgres@127.0.0.1:${await freePort()}/none`, { max: 1, connect_timeout: 2 })
    const page = new StatusPage({
      monitor: new StreamMonitor(),
      sql,
      slot: 's',
      publication: 'p',
      mappings: [{ name: 'm', namespace: 'ns', table: 'public.t' }],
    })
    try {
      const html = await page.render()
      expect(html).toContain('Dead letters and slot: cannot read PostgreSQL')
      expect(html).toContain('<td>m</td><td>ns</td><td>public.t</td>')
      expect(html).toContain('not streaming')
    } finally {
      await page.stop()
      await sql.end({ timeout: 1 })
    }
  })

  test('PostgreSQL that never answers: every page answers within the wait, with one read in flight', async () => {
    // accepts connections and never says a word (a network partition, a server stuck in recovery)
    const sockets: Socket[] = []
    const silent = createServer((s) => sockets.push(s))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const sql = postgres(`postgres://postgres@127.0.0.1:${(silent.address() as AddressInfo).port}/none`, {
      max: 4,
      connect_timeout: 60,
    })
    const page = new StatusPage({
      monitor: new StreamMonitor(),
      sql,
      slot: 's',
      publication: 'p',
      mappings: [{ name: 'm', namespace: 'ns', table: 'public.t' }],
      dbWaitMs: 300,
    })
    try {
      for (let i = 0; i < 4; i++) {
        const started = Date.now()
        const html = await page.render()
        expect(Date.now() - started).toBeLessThan(2_500)
        expect(html).toMatch(/Dead letters and slot: no answer from PostgreSQL in \d+ s/)
        expect(html).toContain('<td>m</td><td>ns</td><td>public.t</td>')
      }
      // the pages joined the read in flight instead of queueing more on the stream's pool
      expect(sockets.length).toBe(1)
      const stopping = Date.now()
      await page.stop()
      expect(Date.now() - stopping).toBeLessThan(2_500)
    } finally {
      await sql.end({ timeout: 0 })
      for (const s of sockets) s.destroy()
      silent.close()
    }
  })

  test('an error kind repeats nothing of the error text', () => {
    expect(deadLetterKind('transform transforms/items.ts threw for id 41: cannot handle bad-secret')).toBe(
      'transform threw',
    )
    expect(deadLetterKind('turbopuffer refused the write (400): attribute x: "secret" too long')).toBe(
      'turbopuffer refused (400)',
    )
    expect(deadLetterKind('column "n" (text, declared int in [target.schema]): "secret" is not exactly a int'))
      .toBe("value does not fit the attribute's type")
    expect(deadLetterKind('secret')).toBe('other')
  })

  test('latency quantiles as histogram_quantile estimates them', () => {
    const bounds = [0.01, 0.1, 1]
    expect(quantile(0.5, bounds, [0, 0, 0], 0)).toBe(null)
    expect(quantile(0.5, bounds, [10, 10, 10], 10)).toBeCloseTo(0.005)
    expect(quantile(0.5, bounds, [0, 10, 10], 10)).toBeCloseTo(0.055)
    expect(quantile(0.99, bounds, [0, 0, 5], 10)).toBe(1)
  })
})
