// JSON-lines files of the local server's data dir (persistence.ts, and the older layout persistence-legacy.ts reads).
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync } from 'node:fs'
import { Buffer } from 'node:buffer'
import { parseJson } from './json.ts'

/** Calls `each` with every complete line of a JSON-lines file; a torn last line is cut off the file. */
export function readLines(path: string, each: (value: unknown, lineNo: number, chars: number) => void): void {
  if (!existsSync(path)) return
  const text = readFileSync(path, 'utf8')
  let offset = 0
  let lineNo = 0
  while (offset < text.length) {
    const end = text.indexOf('\n', offset)
    lineNo++
    if (end === -1) {
      // A torn last line is a write that was never acknowledged: drop it so later appends stay parseable.
      const fd = openSync(path, 'r+')
      ftruncateSync(fd, Buffer.byteLength(text.slice(0, offset)))
      fsyncSync(fd)
      closeSync(fd)
      return
    }
    let value: unknown
    try {
      value = parseJson(text.slice(offset, end))
    } catch (e) {
      throw new Error(`local turbopuffer data is corrupt: ${path} line ${lineNo}: ${(e as Error).message}`)
    }
    each(value, lineNo, end + 1 - offset)
    offset = end + 1
  }
}
