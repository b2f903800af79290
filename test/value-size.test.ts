// turbopuffer refuses an attribute value over 8 MiB (and a document over 64 MiB): puffgres does not send such a
// document. A streamed row whose `text` column (declared filterable: false, so only the size limit applies) holds
// 9 MiB becomes a dead letter saying which column, how big, the limit and what to do; the other rows of its batch
// land, no request is refused by the server, and the stream goes on.
import { expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const MiB = 1024 * 1024

const pipe = usePipeline({
  name: 'valuesize',
  sql: 'CREATE TABLE items (id int PRIMARY KEY, body text)',
  migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
  stream: true,
})

test('a row with a 9 MiB text value is a dead letter naming the column; the rest of its batch lands', async () => {
  await pipe.db.sql.begin(async (tx) => {
    await tx`INSERT INTO items VALUES (1, 'one')`
    await tx`INSERT INTO items VALUES (2, repeat('x', ${9 * MiB}))`
    await tx`INSERT INTO items VALUES (3, 'three')`
  })
  await waitFor('one dead letter', async () => (await pipe.deadLetters('items')).length === 1)
  expect(await pipe.deadLetters('items')).toEqual([{
    mapping: 'items',
    doc_id: '2',
    // (the prefix is the pipeline's for every refusal, whether the sink's own check or the service's 4xx)
    error: 'not sent to turbopuffer: attribute "body" of document 2 is 9437184 bytes, over turbopuffer\'s ' +
      "limit of 8388608 bytes (8 MiB) for one value: leave the column out of the mapping's columns, or shorten it " +
      'in a transform',
  }])
  await waitFor('rows 1 and 3', () => pipe.docs('items').size === 2)
  expect([...pipe.docs('items').keys()].sort()).toEqual([1, 3])
  // refused before sending: the server never answered 400
  expect(pipe.server.stats().statuses['400']).toBeUndefined()

  // the stream goes on
  await pipe.db.sql`INSERT INTO items VALUES (4, 'four')`
  await waitFor('row 4', () => pipe.docs('items').has(4))
  expect(pipe.docs('items').get(4)?.body).toBe('four')
  expect(await pipe.deadLetters('items')).toHaveLength(1)
})
