import { afterAll } from 'bun:test'
import { stopSharedCluster } from './pg.ts'

afterAll(async () => {
  await stopSharedCluster()
})
