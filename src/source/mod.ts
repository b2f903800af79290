// The source reader: everything puffgres reads from a source table outside the replication stream, in one place
// (docs/ARCHITECTURE.md, invariant 12). Every path reads the catalog, plans its reads and decodes rows here:
//   const plan = await planReads(sql, mapping, needed)     // catalog → the read plan (columns, types, page SQL)
//   const page = await readPage(sql, plan, after, limit)      // a keyset COPY page, read after a stable LSN
//   const sample = await readSample(sql, plan, n)             // n member rows at random (verify --sample)
//   const filter = textMatchFilter(plan.columns, [{ ws: '7' }]) // pages/samples of some rows only (verify --tenant)
//   const { stale } = await recheckPage(sql, plan, page)      // a written page's keys that went away since
//   const rows = await readRowsByKey(sql, src, cols, …)       // rows by key (TOAST re-reads, dlq retry, repair)
//   const shape = await tableByOid(sql, oid)                  // a table as it is now (the stream follows OIDs)
// Values decode with postgres/values.ts, as the stream decodes pgoutput's: one decode rule, a domain as its base type.
export { type CatalogColumn, type TableInfo, tableInfo } from './catalog.ts'
export { generatedNeeded, tableByOid, type TableShape } from './table-shape.ts'
export { type ColumnType, keyTextRefused, readRowsByKey, undecodable } from './read-rows.ts'
export {
  copyPageSql,
  copySampleSql,
  type PlanColumn,
  planReads,
  type ReadPlan,
  renderSql,
  ROW_ALIAS,
  type RowFilter,
} from './read-plan.ts'
export { textMatchFilter } from './row-filter.ts'
export {
  decodePage,
  lastKeyOf,
  movedCandidates,
  type Page,
  pageLsn,
  placeholderTexts,
  type RawPage,
  readPage,
  readRawPage,
  readSample,
  type RecheckedPage,
  recheckPage,
  textArrayLiteral,
} from './page.ts'
