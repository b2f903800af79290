// Decoder for the pgoutput logical replication protocol, version 1: the payload of each XLogData frame.
// Layouts follow https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
// This is the per-row hot path: it reads straight from the frame with a DataView, shares one TextDecoder, and
// allocates only the objects it returns.

export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index'

export interface RelationColumn {
  name: string
  typeOid: number
  typmod: number
  /** part of the replica identity (the primary key under REPLICA IDENTITY DEFAULT) */
  isKey: boolean
  /** the type's name when a Type ('Y') message announced it (non-builtin types: enums, vector, citext, ...) */
  typeName?: string
}

export interface Relation {
  oid: number
  schema: string
  name: string
  replicaIdentity: ReplicaIdentity
  columns: RelationColumn[]
}

export interface TypeInfo {
  oid: number
  schema: string
  name: string
}

export type TupleValue =
  | { readonly kind: 'null' }
  /** a TOASTed value that the change did not touch: pgoutput does not send it */
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'text'; readonly value: string }
  /** only with the `binary 'true'` option: the type's binary send format */
  | { readonly kind: 'binary'; readonly value: Uint8Array }
  /** text that is not valid UTF-8 (a SQL_ASCII database holds any bytes): its bytes, for the row's dead letter */
  | { readonly kind: 'invalid'; readonly value: Uint8Array }

/** One value per relation column, in the Relation message's column order. */
export type Tuple = TupleValue[]

export interface BeginMessage {
  tag: 'begin'
  /** LSN of the transaction's commit record */
  finalLsn: bigint
  commitTime: Date
  xid: number
}

export interface CommitMessage {
  tag: 'commit'
  flags: number
  /** LSN of the commit record */
  commitLsn: bigint
  /** end of the commit record: the position to confirm once the transaction is durable downstream */
  endLsn: bigint
  commitTime: Date
}

export interface OriginMessage {
  tag: 'origin'
  originLsn: bigint
  name: string
}

export interface RelationMessage {
  tag: 'relation'
  relation: Relation
}

export interface TypeMessage {
  tag: 'type'
  type: TypeInfo
}

export interface InsertMessage {
  tag: 'insert'
  relation: Relation
  new: Tuple
}

export interface UpdateMessage {
  tag: 'update'
  relation: Relation
  /** the old key columns (other columns null) when the replica identity changed (e.g. a primary-key update) */
  key?: Tuple
  /** the whole old row under REPLICA IDENTITY FULL */
  old?: Tuple
  new: Tuple
}

export interface DeleteMessage {
  tag: 'delete'
  relation: Relation
  /** the old key columns (other columns null) */
  key?: Tuple
  /** the whole old row under REPLICA IDENTITY FULL */
  old?: Tuple
}

export interface TruncateMessage {
  tag: 'truncate'
  cascade: boolean
  restartIdentity: boolean
  relations: Relation[]
}

export interface LogicalMessage {
  tag: 'message'
  transactional: boolean
  lsn: bigint
  prefix: string
  content: Uint8Array
}

export type PgOutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage

export const NULL_VALUE: TupleValue = Object.freeze({ kind: 'null' })
export const UNCHANGED_VALUE: TupleValue = Object.freeze({ kind: 'unchanged' })

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** UTF-8 text of buf[start, end). Short ASCII (most keys, numbers, dates) skips TextDecoder's per-call cost. */
function decodeUtf8(buf: Uint8Array, start: number, end: number): string {
  if (end - start <= 24) {
    let s = ''
    for (let i = start; i < end; i++) {
      const c = buf[i]
      if (c > 0x7f) return utf8.decode(buf.subarray(start, end))
      s += String.fromCharCode(c)
    }
    return s
  }
  return utf8.decode(buf.subarray(start, end))
}

/** A text value; bytes that are not UTF-8 fail only the rows that need this column, not the whole stream. */
function textValue(buf: Uint8Array, start: number, end: number): TupleValue {
  try {
    return { kind: 'text', value: decodeUtf8(buf, start, end) }
  } catch {
    return { kind: 'invalid', value: buf.slice(start, end) }
  }
}

// PostgreSQL timestamps count microseconds from 2000-01-01 UTC.
const PG_EPOCH_MS = Date.UTC(2000, 0, 1)

const REPLICA_IDENTITY: Record<number, ReplicaIdentity> = {
  0x64: 'default', // d
  0x6e: 'nothing', // n
  0x66: 'full', // f
  0x69: 'index', // i
}

/** Decodes pgoutput messages and keeps the relation and type caches that later messages refer to. */
export class PgOutputDecoder {
  /** relation oid → the latest Relation message for it */
  readonly relations = new Map<number, Relation>()
  /** type oid → the latest Type message for it */
  readonly types = new Map<number, TypeInfo>()

  // Cursor state of the message being decoded (one decoder instance decodes one message at a time).
  private buf: Uint8Array = new Uint8Array(0)
  // a DataView only for the 64-bit and signed 32-bit fields (begin, commit, relation): a change needs none
  private dv: DataView | undefined
  private get view(): DataView {
    return this.dv ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength)
  }
  private pos = 0

  /** Decodes one pgoutput message starting at `offset` of `buf` (an XLogData frame's payload starts at 25). */
  decode(buf: Uint8Array, offset = 0): PgOutputMessage {
    this.buf = buf
    this.dv = undefined
    this.pos = offset + 1
    if (offset >= buf.length) throw new Error('pgoutput: empty message')
    const tag = buf[offset]
    try {
      switch (tag) {
        case 0x42: // B
          return this.begin()
        case 0x43: // C
          return this.commit()
        case 0x4f: // O
          return { tag: 'origin', originLsn: this.u64(), name: this.cstring() }
        case 0x52: // R
          return this.relation()
        case 0x59: // Y
          return this.type()
        case 0x49: // I
          return this.insert()
        case 0x55: // U
          return this.update()
        case 0x44: // D
          return this.delete()
        case 0x54: // T
          return this.truncate()
        case 0x4d: // M
          return this.message()
        default:
          throw new Error(`unknown message type ${JSON.stringify(String.fromCharCode(tag))} (0x${tag.toString(16)})`)
      }
    } catch (e) {
      if (e instanceof RangeError) throw new Error(`pgoutput: truncated '${String.fromCharCode(tag)}' message`)
      if (e instanceof Error && !e.message.startsWith('pgoutput:')) e.message = 'pgoutput: ' + e.message
      throw e
    }
  }

  private begin(): BeginMessage {
    const finalLsn = this.u64()
    const commitTime = this.timestamp()
    return { tag: 'begin', finalLsn, commitTime, xid: this.u32() }
  }

  private commit(): CommitMessage {
    const flags = this.u8()
    const commitLsn = this.u64()
    const endLsn = this.u64()
    return { tag: 'commit', flags, commitLsn, endLsn, commitTime: this.timestamp() }
  }

  private relation(): RelationMessage {
    const oid = this.u32()
    // pgoutput sends an empty namespace for pg_catalog
    const schema = this.cstring() || 'pg_catalog'
    const name = this.cstring()
    const identChar = this.u8()
    const replicaIdentity = REPLICA_IDENTITY[identChar]
    if (!replicaIdentity) throw new Error(`unknown replica identity ${identChar} for relation ${schema}.${name}`)
    const ncols = this.i16()
    const columns: RelationColumn[] = new Array(ncols)
    for (let i = 0; i < ncols; i++) {
      const flags = this.u8()
      const colName = this.cstring()
      const typeOid = this.u32()
      const typmod = this.view.getInt32(this.pos)
      this.pos += 4
      const column: RelationColumn = { name: colName, typeOid, typmod, isKey: (flags & 1) === 1 }
      const type = this.types.get(typeOid)
      if (type) column.typeName = type.name
      columns[i] = column
    }
    const relation: Relation = { oid, schema, name, replicaIdentity, columns }
    this.relations.set(oid, relation)
    return { tag: 'relation', relation }
  }

  private type(): TypeMessage {
    const oid = this.u32()
    const type: TypeInfo = { oid, schema: this.cstring() || 'pg_catalog', name: this.cstring() }
    this.types.set(oid, type)
    return { tag: 'type', type }
  }

  private insert(): InsertMessage {
    const relation = this.relationRef()
    this.expect(0x4e, 'N', 'insert')
    return { tag: 'insert', relation, new: this.tuple(relation) }
  }

  private update(): UpdateMessage {
    const relation = this.relationRef()
    let key: Tuple | undefined
    let old: Tuple | undefined
    let marker = this.u8()
    if (marker === 0x4b) { // K
      key = this.tuple(relation)
      marker = this.u8()
    } else if (marker === 0x4f) { // O
      old = this.tuple(relation)
      marker = this.u8()
    }
    if (marker !== 0x4e) throw new Error(`update: expected 'N', got 0x${marker.toString(16)}`)
    const msg: UpdateMessage = { tag: 'update', relation, new: this.tuple(relation) }
    if (key) msg.key = key
    if (old) msg.old = old
    return msg
  }

  private delete(): DeleteMessage {
    const relation = this.relationRef()
    const marker = this.u8()
    const tuple = this.tuple(relation)
    if (marker === 0x4b) return { tag: 'delete', relation, key: tuple }
    if (marker === 0x4f) return { tag: 'delete', relation, old: tuple }
    throw new Error(`delete: expected 'K' or 'O', got 0x${marker.toString(16)}`)
  }

  private truncate(): TruncateMessage {
    const n = this.u32()
    const options = this.u8()
    const relations: Relation[] = new Array(n)
    for (let i = 0; i < n; i++) relations[i] = this.relationRef()
    return { tag: 'truncate', cascade: (options & 1) !== 0, restartIdentity: (options & 2) !== 0, relations }
  }

  private message(): LogicalMessage {
    const flags = this.u8()
    const lsn = this.u64()
    const prefix = this.cstring()
    const len = this.u32()
    const content = this.bytes(len).slice()
    return { tag: 'message', transactional: (flags & 1) === 1, lsn, prefix, content }
  }

  private relationRef(): Relation {
    const oid = this.u32()
    const relation = this.relations.get(oid)
    if (!relation) throw new Error(`change for relation oid ${oid} arrived before its Relation message`)
    return relation
  }

  private tuple(relation: Relation): Tuple {
    const n = this.i16()
    if (n !== relation.columns.length) {
      throw new Error(
        `tuple of ${relation.schema}.${relation.name} has ${n} columns, its Relation message ${relation.columns.length}`,
      )
    }
    const values: Tuple = new Array(n)
    for (let i = 0; i < n; i++) {
      const kind = this.u8()
      if (kind === 0x74) { // t
        const len = this.u32()
        const start = this.pos
        const end = start + len
        // bounds checked here rather than by bytes(): no subarray per value
        if (end > this.buf.length) throw new RangeError('value past the end of the message')
        this.pos = end
        values[i] = textValue(this.buf, start, end)
      } else if (kind === 0x6e) { // n
        values[i] = NULL_VALUE
      } else if (kind === 0x75) { // u
        values[i] = UNCHANGED_VALUE
      } else if (kind === 0x62) { // b
        const len = this.u32()
        values[i] = { kind: 'binary', value: this.bytes(len).slice() }
      } else {
        throw new Error(`unknown tuple value kind 0x${kind.toString(16)} in ${relation.schema}.${relation.name}`)
      }
    }
    return values
  }

  private expect(byte: number, name: string, what: string) {
    const got = this.u8()
    if (got !== byte) throw new Error(`${what}: expected '${name}', got 0x${got.toString(16)}`)
  }

  // u8, i16, u32 read the bytes directly (big-endian); past the end they throw a RangeError, as DataView does

  private u8(): number {
    if (this.pos >= this.buf.length) throw new RangeError('read past the end of the message')
    return this.buf[this.pos++]
  }

  private i16(): number {
    const p = this.pos
    const b = this.buf
    if (p + 2 > b.length) throw new RangeError('read past the end of the message')
    this.pos = p + 2
    return ((b[p] << 24) | (b[p + 1] << 16)) >> 16
  }

  private u32(): number {
    const p = this.pos
    const b = this.buf
    if (p + 4 > b.length) throw new RangeError('read past the end of the message')
    this.pos = p + 4
    return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0
  }

  private u64(): bigint {
    const v = this.view.getBigUint64(this.pos)
    this.pos += 8
    return v
  }

  private timestamp(): Date {
    const us = this.view.getBigInt64(this.pos)
    this.pos += 8
    return new Date(PG_EPOCH_MS + Math.floor(Number(us) / 1000))
  }

  private cstring(): string {
    const end = this.buf.indexOf(0, this.pos)
    if (end < 0) throw new RangeError('unterminated string')
    const s = decodeUtf8(this.buf, this.pos, end)
    this.pos = end + 1
    return s
  }

  private bytes(len: number): Uint8Array {
    const end = this.pos + len
    if (end > this.buf.length) throw new RangeError('value past the end of the message')
    const b = this.buf.subarray(this.pos, end)
    this.pos = end
    return b
  }
}
