// Write ops as the pipeline hands them to the sink, for the tests of the sink and of its request planning.
import type { WriteOp } from '../../src/types.ts'

export const up = (id: string | number, version: string, attributes: Record<string, unknown> = {}): WriteOp => ({
  kind: 'upsert',
  id,
  version,
  attributes,
})

export const del = (id: string | number, version: string): WriteOp => ({ kind: 'delete', id, version })
