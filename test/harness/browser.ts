// A real browser for tests: headless Chromium (Debian's `chromium` package) driven over the DevTools protocol with
// the runtime's own WebSocket (no npm dependency). `findChromium()` is undefined when none is installed: tests then
// skip, except under CI=true, where a missing browser fails (so CI cannot skip the page's test without a word).
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'

const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']

/** The path of a Chromium on PATH (or $CHROMIUM), or undefined. */
export function findChromium(): string | undefined {
  if (process.env.CHROMIUM && existsSync(process.env.CHROMIUM)) return process.env.CHROMIUM
  for (const dir of (process.env.PATH ?? '').split(':')) {
    for (const name of CANDIDATES) if (dir && existsSync(join(dir, name))) return join(dir, name)
  }
  return undefined
}

/** CI=true (as CI services set it): a tool a test needs must be there. */
export const inCI = process.env.CI === 'true'

export interface Page {
  /** loads `url` and resolves once its load event fired */
  goto(url: string): Promise<void>
  /** evaluates a JavaScript expression in the page; its value (JSON) */
  evaluate<T>(expression: string): Promise<T>
  /** the viewport (CSS pixels); `mobile` also makes the page's viewport meta count */
  viewport(width: number, height: number, mobile?: boolean): Promise<void>
  /** a PNG of the whole page (not only the viewport) */
  screenshot(): Promise<Uint8Array>
  /** resolves once the page starts loading a new document by itself (e.g. a meta refresh), or rejects after `ms` */
  nextNavigation(ms: number): Promise<void>
  close(): Promise<void>
}

type Pending = { resolve: (v: any) => void; reject: (e: Error) => void }

/** Starts a headless Chromium and opens one page. */
export async function openPage(chromium: string): Promise<Page> {
  const profile = mkdtempSync(join(tmpdir(), 'puffgres-chromium-'))
  const proc = spawn(chromium, [
    '--headless=new',
    '--no-sandbox', // CI containers run tests as root, where Chromium's sandbox cannot start
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-extensions',
    '--hide-scrollbars',
    '--remote-debugging-port=0',
    `--user-data-dir=${profile}`,
    '--window-size=1100,900',
    'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe'] })
  const exited = new Promise<void>((resolve) => proc.on('close', () => resolve()))
  const cleanup = async () => {
    proc.kill('SIGKILL')
    // the profile is written until the browser has gone
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))])
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 3 })
    } catch { /* a temporary folder: left behind at worst */ }
  }
  try {
    const browserWs = await new Promise<string>((resolve, reject) => {
      let err = ''
      const timer = setTimeout(() => reject(new Error(`chromium did not start in 20 s: ${err.slice(-500)}`)), 20_000)
      proc.stderr!.on('data', (d) => {
        err += d
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err)
        if (m) {
          clearTimeout(timer)
          resolve(m[1])
        }
      })
      proc.on('close', (code) => reject(new Error(`chromium exited (${code}): ${err.slice(-500)}`)))
    })
    const base = new URL(browserWs)
    const targets = await (await fetch(`http://${base.host}/json/list`)).json() as {
      type: string
      webSocketDebuggerUrl: string
    }[]
    const target = targets.find((t) => t.type === 'page')
    if (!target) throw new Error('chromium opened no page')
    const ws = new WebSocket(target.webSocketDebuggerUrl)
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve()
      ws.onerror = () => reject(new Error('cannot connect to chromium'))
    })
    let nextId = 0
    const pending = new Map<number, Pending>()
    const listeners = new Set<(method: string, params: any) => void>()
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data))
      if (msg.id !== undefined) {
        const p = pending.get(msg.id)
        pending.delete(msg.id)
        if (msg.error) p?.reject(new Error(`DevTools: ${msg.error.message}`))
        else p?.resolve(msg.result)
      } else for (const l of listeners) l(msg.method, msg.params)
    }
    const send = (method: string, params: Record<string, unknown> = {}): Promise<any> =>
      new Promise((resolve, reject) => {
        const id = ++nextId
        pending.set(id, { resolve, reject })
        ws.send(JSON.stringify({ id, method, params }))
      })
    const once = (method: string, ms: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(l)
          reject(new Error(`no ${method} in ${ms} ms`))
        }, ms)
        const l = (m: string) => {
          if (m !== method) return
          clearTimeout(timer)
          listeners.delete(l)
          resolve()
        }
        listeners.add(l)
      })
    await send('Page.enable')
    return {
      async goto(url) {
        const loaded = once('Page.loadEventFired', 15_000)
        const r = await send('Page.navigate', { url })
        if (r.errorText) throw new Error(`cannot load ${url}: ${r.errorText}`)
        await loaded
      },
      async evaluate(expression) {
        const r = await send('Runtime.evaluate', { expression, returnByValue: true })
        if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.text} (${expression})`)
        return r.result.value
      },
      async viewport(width, height, mobile = false) {
        await send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile })
      },
      async screenshot() {
        const r = await send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true })
        return Uint8Array.from(atob(r.data), (c) => c.charCodeAt(0))
      },
      nextNavigation: (ms) => once('Page.frameStartedLoading', ms),
      async close() {
        ws.close()
        await cleanup()
      },
    }
  } catch (e) {
    await cleanup()
    throw e
  }
}
