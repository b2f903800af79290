// Membership predicates: which rows of a source table belong in a mapping's namespace.
//   const p = parseMembership("status = 'active' AND deleted_at IS NULL")   // once, at config load
//   const member = compileMembership(p, types)                             // once per relation (types: OIDs)
//   member(row) === true                                                   // per row, on the stream's hot path
//   `WHERE (${toSql(p)})`                                                  // backfill selects the same rows
// Semantics are PostgreSQL's (three-valued logic, its comparison rules for each type); see eval.ts and
// _values.ts for what is compared how, and what needs column types to be exact.
//
// Known limits (as of the decoder in postgres/values.ts): it decodes float NaN/±Infinity and timestamp ±infinity
// as null, and truncates timestamps to milliseconds, so predicates on such values can decide differently from
// PostgreSQL. Text compares in code-point order, which equals PostgreSQL's only under collation "C".
export { MembershipError, membershipFailure, parseMembership, predicateColumns } from './parse.ts'
export type { CompareOp, Expr, Literal, Predicate } from './parse.ts'
export { compileMembership, evaluate, isMember } from './eval.ts'
export type { ColumnType, ColumnTypes, CompiledPredicate } from './eval.ts'
export { quoteIdentifier, quoteLiteral, toSql } from './sql.ts'
