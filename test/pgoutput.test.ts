// The decoder against hand-built messages laid out as the protocol documentation describes them; the replication
// tests cover the same decoder against what a real PostgreSQL sends.
import { describe, expect, test } from 'bun:test'
import { formatLsn, parseLsn } from '../src/postgres/lsn.ts'
import { PgOutputDecoder } from '../src/postgres/pgoutput.ts'

/** Builds a message the way the walsender does (network byte order, C strings). */
class Msg {
  private parts: number[] = []
  byte(c: string | number) {
    this.parts.push(typeof c === 'string' ? c.charCodeAt(0) : c)
    return this
  }
  i16(n: number) {
    this.parts.push((n >> 8) & 0xff, n & 0xff)
    return this
  }
  i32(n: number) {
    this.parts.push((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff)
    return this
  }
  i64(n: bigint) {
    for (let s = 56n; s >= 0n; s -= 8n) this.parts.push(Number((n >> s) & 0xffn))
    return this
  }
  str(s: string) {
    this.parts.push(...new TextEncoder().encode(s), 0)
    return this
  }
  raw(b: Uint8Array) {
    this.parts.push(...b)
    return this
  }
  text(s: string) {
    const b = new TextEncoder().encode(s)
    return this.byte('t').i32(b.length).raw(b)
  }
  build(prefix = 0) {
    return new Uint8Array([...new Array(prefix).fill(0xee), ...this.parts])
  }
}

// 2024-01-02T03:04:05.678Z in microseconds since 2000-01-01
const TS = BigInt(Date.UTC(2024, 0, 2, 3, 4, 5, 678) - Date.UTC(2000, 0, 1)) * 1000n + 9n

function relationMsg(oid = 16384) {
  return new Msg().byte('R').i32(oid).str('public').str('items').byte('d').i16(3)
    .byte(1).str('id').i32(23).i32(-1)
    .byte(0).str('title').i32(1043).i32(104)
    .byte(0).str('mood').i32(70000).i32(-1)
    .build()
}

describe('lsn', () => {
  test('parses and formats PostgreSQL LSNs', () => {
    expect(parseLsn('16/B374D848')).toBe(0x16B374D848n)
    expect(formatLsn(0x16B374D848n)).toBe('16/B374D848')
    expect(formatLsn(0n)).toBe('0/0')
    expect(parseLsn('FFFFFFFF/FFFFFFFF')).toBe(0xFFFFFFFFFFFFFFFFn)
    expect(() => parseLsn('16B374D848')).toThrow('invalid LSN "16B374D848"')
  })
})

describe('PgOutputDecoder', () => {
  test('Begin and Commit', () => {
    const d = new PgOutputDecoder()
    expect(d.decode(new Msg().byte('B').i64(0x1_0000_0010n).i64(TS).i32(0xfffffff0).build())).toEqual({
      tag: 'begin',
      finalLsn: 0x1_0000_0010n,
      commitTime: new Date('2024-01-02T03:04:05.678Z'),
      xid: 0xfffffff0,
    })
    expect(d.decode(new Msg().byte('C').byte(0).i64(0x10n).i64(0x38n).i64(TS).build())).toEqual({
      tag: 'commit',
      flags: 0,
      commitLsn: 0x10n,
      endLsn: 0x38n,
      commitTime: new Date('2024-01-02T03:04:05.678Z'),
    })
  })

  test('Type then Relation: the relation cache names non-builtin column types', () => {
    const d = new PgOutputDecoder()
    expect(d.decode(new Msg().byte('Y').i32(70000).str('public').str('mood').build())).toEqual({
      tag: 'type',
      type: { oid: 70000, schema: 'public', name: 'mood' },
    })
    const rel = d.decode(relationMsg())
    expect(rel).toEqual({
      tag: 'relation',
      relation: {
        oid: 16384,
        schema: 'public',
        name: 'items',
        replicaIdentity: 'default',
        columns: [
          { name: 'id', typeOid: 23, typmod: -1, isKey: true },
          { name: 'title', typeOid: 1043, typmod: 104, isKey: false },
          { name: 'mood', typeOid: 70000, typmod: -1, isKey: false, typeName: 'mood' },
        ],
      },
    })
    expect(d.relations.get(16384)).toBe((rel as { relation: unknown }).relation as never)
  })

  test('Insert, Update with K and O tuples, Delete, at an offset inside an XLogData frame', () => {
    const d = new PgOutputDecoder()
    d.decode(relationMsg())
    const tuple = (
      m: Msg,
      id: string,
      title: string | null,
    ) => (title === null ? m.i16(3).text(id).byte('n').byte('u') : m.i16(3).text(id).text(title).byte('u'))
    const ins = d.decode(tuple(new Msg().byte('I').i32(16384).byte('N'), '1', 'héllo').build(25), 25)
    expect(ins).toMatchObject({
      tag: 'insert',
      relation: { name: 'items' },
      new: [{ kind: 'text', value: '1' }, { kind: 'text', value: 'héllo' }, { kind: 'unchanged' }],
    })
    const updK = d.decode(tuple(tuple(new Msg().byte('U').i32(16384).byte('K'), '1', null).byte('N'), '2', 'b').build())
    expect(updK).toMatchObject({
      tag: 'update',
      key: [{ kind: 'text', value: '1' }, { kind: 'null' }, { kind: 'unchanged' }],
      new: [{ kind: 'text', value: '2' }, { kind: 'text', value: 'b' }, { kind: 'unchanged' }],
    })
    expect('old' in updK).toBe(false)
    const updO = d.decode(tuple(tuple(new Msg().byte('U').i32(16384).byte('O'), '1', 'a').byte('N'), '1', 'b').build())
    expect(updO).toMatchObject({ tag: 'update', old: [{ value: '1' }, { value: 'a' }, { kind: 'unchanged' }] })
    expect('key' in updO).toBe(false)
    const updN = d.decode(tuple(new Msg().byte('U').i32(16384).byte('N'), '1', 'c').build())
    expect(updN).toMatchObject({ tag: 'update', new: [{ value: '1' }, { value: 'c' }, { kind: 'unchanged' }] })
    expect('key' in updN || 'old' in updN).toBe(false)
    expect(d.decode(tuple(new Msg().byte('D').i32(16384).byte('K'), '2', null).build())).toMatchObject({
      tag: 'delete',
      key: [{ value: '2' }, { kind: 'null' }, { kind: 'unchanged' }],
    })
    expect(d.decode(tuple(new Msg().byte('D').i32(16384).byte('O'), '2', 'z').build())).toMatchObject({
      tag: 'delete',
      old: [{ value: '2' }, { value: 'z' }, { kind: 'unchanged' }],
    })
  })

  test('text of every length and script decodes as UTF-8', () => {
    const d = new PgOutputDecoder()
    d.decode(relationMsg())
    for (
      const s of ['', 'a', 'é', '😀', 'x'.repeat(24), 'x'.repeat(23) + 'é', 'ünïcödé '.repeat(20), 'y'.repeat(5000)]
    ) {
      const m = d.decode(new Msg().byte('I').i32(16384).byte('N').i16(3).text(s).text(s).byte('n').build())
      expect((m as { new: { value?: string }[] }).new.slice(0, 2).map((v) => v.value)).toEqual([s, s])
    }
  })

  test('binary tuple values are kept as bytes', () => {
    const d = new PgOutputDecoder()
    d.decode(relationMsg())
    const m = d.decode(
      new Msg().byte('I').i32(16384).byte('N').i16(3).byte('b').i32(4).i32(7).byte('n').byte('n').build(),
    )
    expect(m).toMatchObject({
      tag: 'insert',
      new: [{ kind: 'binary', value: new Uint8Array([0, 0, 0, 7]) }, { kind: 'null' }, { kind: 'null' }],
    })
  })

  test('Truncate options and relations, Origin, Message', () => {
    const d = new PgOutputDecoder()
    d.decode(relationMsg(1))
    d.decode(relationMsg(2))
    const t = d.decode(new Msg().byte('T').i32(2).byte(3).i32(1).i32(2).build())
    expect(t).toMatchObject({ tag: 'truncate', cascade: true, restartIdentity: true })
    expect((t as { relations: { oid: number }[] }).relations.map((r) => r.oid)).toEqual([1, 2])
    expect(d.decode(new Msg().byte('T').i32(1).byte(0).i32(2).build())).toMatchObject({
      cascade: false,
      restartIdentity: false,
    })
    expect(d.decode(new Msg().byte('O').i64(0x99n).str('node_a').build())).toEqual({
      tag: 'origin',
      originLsn: 0x99n,
      name: 'node_a',
    })
    expect(d.decode(new Msg().byte('M').byte(1).i64(0x42n).str('pfx').i32(2).raw(new Uint8Array([104, 105])).build()))
      .toEqual({ tag: 'message', transactional: true, lsn: 0x42n, prefix: 'pfx', content: new Uint8Array([104, 105]) })
  })

  test('bad input is a clear error', () => {
    const d = new PgOutputDecoder()
    expect(() => d.decode(new Msg().byte('I').i32(5).byte('N').i16(0).build())).toThrow(
      'pgoutput: change for relation oid 5 arrived before its Relation message',
    )
    expect(() => d.decode(new Msg().byte('Z').build())).toThrow('pgoutput: unknown message type "Z"')
    expect(() => d.decode(new Msg().byte('B').i64(1n).build())).toThrow("pgoutput: truncated 'B' message")
    d.decode(relationMsg())
    expect(() => d.decode(new Msg().byte('I').i32(16384).byte('N').i16(3).byte('t').i32(50).str('x').build()))
      .toThrow("pgoutput: truncated 'I' message")
    expect(() => d.decode(new Msg().byte('I').i32(16384).byte('N').i16(2).build())).toThrow(
      'pgoutput: tuple of public.items has 2 columns, its Relation message 3',
    )
    expect(() => d.decode(new Msg().byte('I').i32(16384).byte('N').i16(3).byte('x').build())).toThrow(
      'unknown tuple value kind 0x78',
    )
  })
})
