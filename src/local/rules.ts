// The write rules of turbopuffer that the local server enforces, in one table. Each refuses the whole request with
// `{"status":"error","error":"…"}` and the status the service answers. Messages quote the service where its
// documentation does ("mixing id types is not supported", "cannot change type int to string"). README's local-server
// section and test/local-rules.test.ts (one conformance case per rule, through the official SDK) follow this table.
import { Buffer } from 'node:buffer'
import { DOCUMENT_BYTES, VALUE_BYTES, VECTOR_DIMENSION_BYTES } from '../turbopuffer/sizes.ts'
import { ApiError } from './errors.ts'

export const LIMITS = {
  /** a filterable `string` value, or each element of a filterable `[]string` */
  filterableValueBytes: 4096,
  stringIdBytes: 64,
  maxUintId: 2n ** 64n - 1n,
  attributeNameBytes: 128,
  attributesPerNamespace: 256,
  /** one attribute value: a string by its UTF-8 bytes, every other element 8 bytes (turbopuffer/sizes.ts) */
  valueBytes: VALUE_BYTES,
  /** one document: the sum of its attribute values, measured as above, and its vector */
  documentBytes: DOCUMENT_BYTES,
  /** one request body, after gunzip; `maxBodyBytes` may lower it */
  requestBytes: 512 * 1024 * 1024,
  vectorDimensions: 10752,
  /** documents one `delete_by_filter` may delete (more: `delete_by_filter_allow_partial`) */
  deleteByFilterRows: 5_000_000,
  /** documents one `patch_by_filter` may patch (more: `patch_by_filter_allow_partial`) */
  patchByFilterRows: 50_000,
} as const

export interface WriteRule {
  /** stable name, used by tests and the README list */
  id: string
  /** what the rule allows, in one line, for README */
  description: string
  status: number
}

export const WRITE_RULES = {
  'filterable-value-size': {
    id: 'filterable-value-size',
    description: `a filterable \`string\` value (or \`[]string\` element) is at most ${LIMITS.filterableValueBytes} ` +
      'bytes; attributes declared `filterable: false`, or with `full_text_search` and not declared filterable, ' +
      'are exempt',
    status: 400,
  },
  'id-type-mixed': {
    id: 'id-type-mixed',
    description: 'one id type per namespace (uint, uuid or string), fixed by the first write: ' +
      '"mixing id types is not supported"',
    status: 400,
  },
  'uint-id': {
    id: 'uint-id',
    description: 'a numeric id is an integer in 0…2^64−1, read exactly (not rounded to a double); negative or ' +
      'fractional numbers are not ids',
    status: 400,
  },
  'string-id': {
    id: 'string-id',
    description: `a string id is 1 to ${LIMITS.stringIdBytes} bytes`,
    status: 400,
  },
  'duplicate-id': {
    id: 'duplicate-id',
    description: 'an id appears at most once per request (across upserts, patches and deletes)',
    status: 400,
  },
  'attribute-type': {
    id: 'attribute-type',
    description: 'one type per attribute, for good: the first value pins it when no schema declares it (5 pins ' +
      '`int`, a later 9.99 is refused: "cannot change type int to float"); int values fit 64 bits',
    status: 400,
  },
  'schema-type-change': {
    id: 'schema-type-change',
    description: 'a schema cannot change the type of an existing attribute ("cannot change type int to string")',
    status: 400,
  },
  'array-element-type': {
    id: 'array-element-type',
    description: 'an array holds elements of one type (undeclared, `[1, 2.5]` is int and float: declare `[]float`)',
    status: 400,
  },
  'nested-value': {
    id: 'nested-value',
    description: 'nested arrays and objects are not attribute values',
    status: 400,
  },
  'attribute-name': {
    id: 'attribute-name',
    description: `an attribute name is 1 to ${LIMITS.attributeNameBytes} bytes and does not start with \`$\``,
    status: 400,
  },
  'attribute-count': {
    id: 'attribute-count',
    description: `at most ${LIMITS.attributesPerNamespace} attributes per namespace`,
    status: 400,
  },
  'value-size': {
    id: 'value-size',
    description: `an attribute value is at most ${LIMITS.valueBytes / 1024 / 1024} MiB, counted as its strings' ` +
      'UTF-8 bytes plus 8 bytes for each number, bool or other element',
    status: 400,
  },
  'document-size': {
    id: 'document-size',
    description: `a document is at most ${LIMITS.documentBytes / 1024 / 1024} MiB: its attribute values (counted ` +
      `as for \`value-size\`) plus its vector (${VECTOR_DIMENSION_BYTES} bytes a dimension); a patch counts the ` +
      'values it carries',
    status: 400,
  },
  'request-size': {
    id: 'request-size',
    description: `a request body is at most ${LIMITS.requestBytes / 1024 / 1024} MiB (after gunzip); ` +
      '`--max-body-mb` lowers it',
    status: 413,
  },
  'vector-dimensions': {
    id: 'vector-dimensions',
    description: `vectors of one namespace have one dimension count, at most ${LIMITS.vectorDimensions}`,
    status: 400,
  },
  'by-filter-limit': {
    id: 'by-filter-limit',
    description: `one request deletes at most ${LIMITS.deleteByFilterRows.toLocaleString('en-US')} documents by ` +
      `\`delete_by_filter\` and patches at most ${LIMITS.patchByFilterRows.toLocaleString('en-US')} by ` +
      '`patch_by_filter`; a filter matching more fails the whole request unless its `*_allow_partial` is true, ' +
      'which applies the first documents by id up to the limit and answers `rows_remaining: true`',
    status: 400,
  },
  'by-filter-shape': {
    id: 'by-filter-shape',
    description: '`patch_by_filter` is `{"filters": …, "patch": {…}}` and its patch cannot set `id`; ' +
      '`*_allow_partial` is a boolean',
    status: 400,
  },
  'patch-vector': {
    id: 'patch-vector',
    description: 'a vector cannot be patched (`patch_rows`, `patch_columns`, `patch_by_filter`): upsert the whole ' +
      'document; a patch keeps the stored vector',
    status: 400,
  },
  'namespace-name': {
    id: 'namespace-name',
    description: 'a namespace name is 1 to 128 characters from `[A-Za-z0-9-_.]`',
    status: 400,
  },
} as const satisfies Record<string, WriteRule>

export type RuleId = keyof typeof WRITE_RULES

/** The error refusing a request under one rule; the message should name the attribute, id or namespace. */
export function violation(rule: RuleId, message: string): RuleViolation {
  return new RuleViolation(WRITE_RULES[rule], message)
}

export class RuleViolation extends ApiError {
  constructor(readonly rule: WriteRule, message: string) {
    super(rule.status, message)
  }
}

export function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8')
}
