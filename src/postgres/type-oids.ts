// Which PostgreSQL type an OID is (builtin OIDs, domains resolved by name, array element types) and the turbopuffer
// attribute type that declares it in a namespace schema. Value decoding itself is values.ts's.
/** OIDs of the builtin types this module knows (fixed in every PostgreSQL installation). */
export const OID = {
  bool: 16,
  bytea: 17,
  char: 18,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  xml: 142,
  float4: 700,
  float8: 701,
  money: 790,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  time: 1083,
  timestamp: 1114,
  timestamptz: 1184,
  interval: 1186,
  timetz: 1266,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
  // arrays
  _bool: 1000,
  _bytea: 1001,
  _char: 1002,
  _name: 1003,
  _int2: 1005,
  _int4: 1007,
  _text: 1009,
  _bpchar: 1014,
  _varchar: 1015,
  _int8: 1016,
  _float4: 1021,
  _float8: 1022,
  _oid: 1028,
  _json: 199,
  _xml: 143,
  _money: 791,
  _date: 1182,
  _time: 1183,
  _timestamp: 1115,
  _timestamptz: 1185,
  _interval: 1187,
  _timetz: 1270,
  _numeric: 1231,
  _uuid: 2951,
  _jsonb: 3807,
} as const

/**
 * PostgreSQL's first OID of objects that are not builtin (FirstGenbkiObjectId): pgoutput sends Type messages only for
 * types at or above it, and the catalog reader names them the same way. The one cutoff on every path.
 */
export const FIRST_NON_BUILTIN_OID = 10000

/** builtin type name (pg_type.typname) → OID: pgoutput names a domain's base type, not its OID */
const BUILTIN_BY_NAME: Record<string, number> = Object.fromEntries(
  Object.entries(OID).map(([name, oid]) => [name, oid]),
)

/**
 * The builtin type a column decodes as: its own OID when builtin, else the builtin its type name names. A domain
 * arrives with the domain's OID and its base type's name (pgoutput's Type message; the read plan does the same),
 * so a domain over `int4` or `text[]` decodes and is declared like its base type on every path.
 */
export function resolveTypeOid(typeOid: number, typeName?: string): number {
  if (typeOid in SCALAR_TPUF || typeOid in ARRAY_ELEMENT || typeOid < FIRST_NON_BUILTIN_OID) return typeOid
  return typeName !== undefined && typeName in BUILTIN_BY_NAME ? BUILTIN_BY_NAME[typeName] : typeOid
}

/** array type OID → element type OID */
export const ARRAY_ELEMENT: Record<number, number> = {
  [OID._bool]: OID.bool,
  [OID._bytea]: OID.bytea,
  [OID._char]: OID.char,
  [OID._name]: OID.name,
  [OID._int2]: OID.int2,
  [OID._int4]: OID.int4,
  [OID._text]: OID.text,
  [OID._bpchar]: OID.bpchar,
  [OID._varchar]: OID.varchar,
  [OID._int8]: OID.int8,
  [OID._float4]: OID.float4,
  [OID._float8]: OID.float8,
  [OID._oid]: OID.oid,
  [OID._json]: OID.json,
  [OID._xml]: OID.xml,
  [OID._money]: OID.money,
  [OID._date]: OID.date,
  [OID._time]: OID.time,
  [OID._timestamp]: OID.timestamp,
  [OID._timestamptz]: OID.timestamptz,
  [OID._interval]: OID.interval,
  [OID._timetz]: OID.timetz,
  [OID._numeric]: OID.numeric,
  [OID._uuid]: OID.uuid,
  [OID._jsonb]: OID.jsonb,
}

/** Stands for the element type of an array of a non-builtin type (enum[], citext[]: their elements are text). */
export const EXTENSION_ELEMENT = 16384

/**
 * The element type of an array type (resolved as resolveTypeOid does), EXTENSION_ELEMENT for an array of a
 * non-builtin type, or undefined when the type is not an array puffgres decodes as one.
 */
export function arrayElementOid(typeOid: number, typeName?: string): number | undefined {
  const oid = resolveTypeOid(typeOid, typeName)
  const element = ARRAY_ELEMENT[oid]
  if (element !== undefined) return element
  if (oid >= FIRST_NON_BUILTIN_OID && typeName !== undefined && typeName.startsWith('_')) return EXTENSION_ELEMENT
  return undefined
}

/** turbopuffer attribute type of a scalar type; types missing here are declared 'string' (their text) */
const SCALAR_TPUF: Record<number, string | undefined> = {
  [OID.bool]: 'bool',
  [OID.int2]: 'int',
  [OID.int4]: 'int',
  [OID.int8]: 'int',
  [OID.oid]: 'int',
  [OID.float4]: 'float',
  [OID.float8]: 'float',
  [OID.uuid]: 'uuid',
  [OID.timestamp]: 'datetime',
  [OID.timestamptz]: 'datetime',
  // json has no attribute type of its own: the transform decides what to keep of it
  [OID.json]: undefined,
  [OID.jsonb]: undefined,
}

export const VECTOR_TYPES = new Set(['vector', 'halfvec'])

/**
 * The turbopuffer attribute type for a PostgreSQL column type, or undefined when there is none to declare (json,
 * jsonb, pgvector vectors: those go to a transform or to the document's vector).
 */
export function tpufType(typeOid: number, typeName?: string): string | undefined {
  if (typeName !== undefined && VECTOR_TYPES.has(typeName)) return undefined
  typeOid = resolveTypeOid(typeOid, typeName)
  const element = ARRAY_ELEMENT[typeOid]
  if (element !== undefined) {
    const t = scalarTpufType(element)
    return t === undefined ? undefined : '[]' + t
  }
  if (typeName !== undefined && typeName.startsWith('_') && !(typeOid in SCALAR_TPUF)) {
    // a non-builtin array (enum[], citext[], ...): its elements are text
    return VECTOR_TYPES.has(typeName.slice(1)) ? undefined : '[]string'
  }
  return scalarTpufType(typeOid)
}

function scalarTpufType(oid: number): string | undefined {
  return oid in SCALAR_TPUF ? SCALAR_TPUF[oid] : 'string'
}
