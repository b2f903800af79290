// The status updates run sends its walsender (postgres/standby-status.ts) and the stall that makes a paused stream
// shed what it read (postgres/replication-stall.ts). Their effect on a real server (a fast shutdown through a
// turbopuffer outage) is tested in stream-restart.test.ts.
import { describe, expect, test } from 'bun:test'
import { pingReply, standbyStatusUpdate } from '../src/postgres/standby-status.ts'
import { StallWatch } from '../src/postgres/replication-stall.ts'

const positions = (b: Uint8Array) => {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  return { written: v.getBigUint64(1), flushed: v.getBigUint64(9), applied: v.getBigUint64(17), reply: b[33] }
}

describe('standby status updates', () => {
  test('a status update reports the flush position as written, flushed and applied', () => {
    expect(positions(standbyStatusUpdate(0x1000n, true))).toEqual({
      written: 0x1000n,
      flushed: 0x1000n,
      applied: 0x1000n,
      reply: 1,
    })
  })

  test('a ping with nothing unconfirmed is answered with the flush position', () => {
    expect(positions(pingReply(0x2000n, 0x2000n))).toEqual({
      written: 0x2000n,
      flushed: 0x2000n,
      applied: 0x2000n,
      reply: 0,
    })
  })

  test('a ping with changes not yet confirmed: written = what was sent, no flush position (the slot stays)', () => {
    expect(positions(pingReply(0x3000n, 0x2000n))).toEqual({ written: 0x3000n, flushed: 0n, applied: 0n, reply: 0 })
  })
})

describe('StallWatch', () => {
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms))
  const until = async (what: () => boolean, ms = 5000) => {
    for (const end = Date.now() + ms; !what() && Date.now() < end;) await wait(20)
  }

  test('calls stalled once nothing was taken for the time given, during one pause', async () => {
    let stalled = 0
    const started = performance.now()
    let at = 0
    const watch = new StallWatch(400, () => 0)
    watch.start(() => true, () => (stalled++, at = performance.now() - started))
    watch.start(() => true, () => stalled++) // a second start during the same pause is the same watch
    await until(() => stalled > 0)
    expect(stalled).toBe(1)
    expect(at).toBeGreaterThanOrEqual(400)
    await wait(600)
    expect(stalled).toBe(1)
  })

  test('not while due() is false (writes merely slow): once it holds', async () => {
    let stalled = 0
    let due = false
    const watch = new StallWatch(100, () => 0, () => due)
    watch.start(() => true, () => stalled++)
    await wait(400)
    expect(stalled).toBe(0)
    due = true
    await until(() => stalled > 0)
    expect(stalled).toBe(1)
  })

  test('what is taken restarts the wait; the end of the pause stops it', async () => {
    let taken = 0
    let paused = true
    let stalled = 0
    const watch = new StallWatch(1000, () => taken)
    watch.start(() => paused, () => stalled++)
    const taking = setInterval(() => taken++, 40)
    await wait(1500)
    clearInterval(taking)
    expect(stalled).toBe(0)
    paused = false
    await wait(1500)
    expect(stalled).toBe(0)
    watch.stop()
  })
})
