// A small Prometheus metrics registry: counters, gauges and histograms with labels, rendered in the text exposition
// format (version 0.0.4). Only what `puffgres run` exports; no dependency.

type Labels = Record<string, string>

/** called for every request and batch observed (thousands a second with a namespace per tenant): no array work */
function labelKey(labels: Labels): string {
  const keys = Object.keys(labels)
  if (keys.length > 1) keys.sort()
  let out = ''
  for (const k of keys) {
    const v = labels[k]
    out += `${out ? ',' : ''}${k}="${NEEDS_ESCAPE.test(v) ? escapeLabel(v) : v}"`
  }
  return out
}

const NEEDS_ESCAPE = /[\\\n"]/

function escapeLabel(v: string): string {
  return v.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"')
}

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN'
  if (n === Infinity) return '+Inf'
  if (n === -Infinity) return '-Inf'
  return String(n)
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

interface Metric {
  name: string
  help: string
  type: 'counter' | 'gauge' | 'histogram'
  render(): string[]
}

export class Counter implements Metric {
  readonly type = 'counter'
  readonly #values = new Map<string, number>()
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    if (by < 0) throw new Error(`counter ${this.name}: cannot decrease`)
    const k = labelKey(labels)
    this.#values.set(k, (this.#values.get(k) ?? 0) + by)
  }

  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0
  }

  /** The sum over every label set. */
  total(): number {
    let t = 0
    for (const v of this.#values.values()) t += v
    return t
  }

  render(): string[] {
    return [...this.#values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ''} ${formatNumber(v)}`)
  }
}

export class Gauge implements Metric {
  readonly type = 'gauge'
  readonly #values = new Map<string, number>()
  constructor(readonly name: string, readonly help: string) {}

  set(value: number, labels: Labels = {}): void {
    this.#values.set(labelKey(labels), value)
  }

  get(labels: Labels = {}): number | undefined {
    return this.#values.get(labelKey(labels))
  }

  render(): string[] {
    return [...this.#values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ''} ${formatNumber(v)}`)
  }
}

export class Histogram implements Metric {
  readonly type = 'histogram'
  readonly #series = new Map<string, { counts: number[]; sum: number; count: number }>()
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i] > buckets[i - 1])) throw new Error(`histogram ${name}: buckets must increase`)
    }
  }

  observe(value: number, labels: Labels = {}): void {
    const k = labelKey(labels)
    let s = this.#series.get(k)
    if (!s) this.#series.set(k, s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 })
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++
    s.sum += value
    s.count++
  }

  /** Cumulative counts per bucket (as rendered, without +Inf) and the total of one label set; zeros when unseen. */
  snapshot(labels: Labels = {}): { counts: number[]; count: number } {
    const s = this.#series.get(labelKey(labels))
    return s ? { counts: s.counts.slice(), count: s.count } : { counts: this.buckets.map(() => 0), count: 0 }
  }

  render(): string[] {
    const out: string[] = []
    for (const [k, s] of this.#series) {
      const sep = k ? ',' : ''
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket{${k}${sep}le="${formatNumber(b)}"} ${s.counts[i]}`))
      out.push(`${this.name}_bucket{${k}${sep}le="+Inf"} ${s.count}`)
      out.push(`${this.name}_sum${k ? `{${k}}` : ''} ${formatNumber(s.sum)}`)
      out.push(`${this.name}_count${k ? `{${k}}` : ''} ${s.count}`)
    }
    return out
  }
}

export class Registry {
  readonly #metrics = new Map<string, Metric>()

  #add<M extends Metric>(m: M): M {
    if (!NAME.test(m.name)) throw new Error(`metric name "${m.name}" is not a Prometheus name`)
    if (this.#metrics.has(m.name)) throw new Error(`metric ${m.name} registered twice`)
    this.#metrics.set(m.name, m)
    return m
  }

  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help))
  }

  gauge(name: string, help: string): Gauge {
    return this.#add(new Gauge(name, help))
  }

  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.#add(new Histogram(name, help, buckets))
  }

  /** The text exposition format; metrics without a sample yet are listed with HELP and TYPE only. */
  render(): string {
    const lines: string[] = []
    for (const m of this.#metrics.values()) {
      lines.push(`# HELP ${m.name} ${m.help.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')}`)
      lines.push(`# TYPE ${m.name} ${m.type}`)
      lines.push(...m.render())
    }
    return lines.join('\n') + '\n'
  }
}
