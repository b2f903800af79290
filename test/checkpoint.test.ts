// The confirm policy on its own (src/stream/checkpoint.ts; docs/ARCHITECTURE.md, invariant 1): what the slot may be
// told is flushed, from what the stream was taken, what landed, and where keepalives fell. No PostgreSQL needed: the
// policy is pure; test/replication.test.ts and the stream tests check it against a real walsender.
import { describe, expect, test } from 'bun:test'
import type { PgOutputMessage } from '../src/postgres/pgoutput.ts'
import { Checkpoint, CommitLedger } from '../src/stream/mod.ts'

const begin = { tag: 'begin', finalLsn: 0n, commitTime: 0n, xid: 1 } as unknown as PgOutputMessage
const commit = (endLsn: bigint) =>
  ({ tag: 'commit', flags: 0, commitLsn: endLsn - 8n, endLsn }) as unknown as PgOutputMessage

function checkpoint() {
  const reported: bigint[] = []
  /** which reports are sent at once (a landed commit) rather than with the next periodic status (a keepalive) */
  const now: boolean[] = []
  const confirmed: bigint[] = []
  const cp = new Checkpoint({
    report: (l, n) => (reported.push(l), now.push(n)),
    confirmed: (l) => confirmed.push(l),
  })
  return { cp, reported, now, confirmed }
}

describe('Checkpoint', () => {
  test('a landed commit is confirmed and reported; never backwards', () => {
    const { cp, reported, confirmed } = checkpoint()
    cp.taken(begin)
    cp.taken(commit(100n))
    cp.landed(100n)
    cp.landed(90n)
    expect(reported).toEqual([100n])
    expect(confirmed).toEqual([100n])
    expect(cp.confirmed).toBe(100n)
    expect(cp.flushLsn).toBe(100n)
  })

  test('a keepalive moves the flush position only when idle with every taken commit confirmed', () => {
    const { cp, reported, now } = checkpoint()
    cp.keepalive(50n) // nothing taken: idle
    expect(reported).toEqual([50n])
    cp.taken(begin)
    cp.keepalive(60n) // inside a transaction (taken, maybe not yet handled): not past it
    expect(cp.flushLsn).toBe(50n)
    cp.taken(commit(100n))
    cp.keepalive(150n) // the commit is still being written: held until it lands
    expect(cp.flushLsn).toBe(50n)
    cp.landed(100n)
    expect(reported).toEqual([50n, 150n])
    // an idle keepalive waits for the periodic status update; a landed commit (and the keepalive it frees) goes now
    expect(now).toEqual([false, true])
    expect(cp.confirmed).toBe(100n)
  })
})

describe('CommitLedger', () => {
  test('the confirmable LSN is the end of the longest landed prefix of commits', () => {
    const l = new CommitLedger()
    l.begin()
    const a = l.add()
    l.commit(10n)
    l.begin()
    const b = l.add()
    l.commit(20n)
    expect(l.advance()).toBeUndefined()
    l.done(b) // the later commit lands first: nothing may be confirmed yet
    expect(l.advance()).toBeUndefined()
    l.done(a)
    expect(l.advance()).toBe(20n)
    l.begin()
    expect(l.open).toBe(true)
    l.commit(30n) // an empty commit, nothing before it outstanding: confirmable at once
    expect(l.advance()).toBe(30n)
  })
})
