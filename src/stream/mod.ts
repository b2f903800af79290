// The stream stage's public face: the engine (runStream), the processor it drives and the checkpoint it keeps.
export { type RunOptions, runStream } from './engine.ts'
export { ChangeProcessor, type FlushInfo, type ProcessorOptions, type RouteRuntime } from './processor.ts'
export { type Batch, WritePipeline } from './inflight.ts'
export { Checkpoint, type CheckpointOptions, CommitLedger } from './checkpoint.ts'
