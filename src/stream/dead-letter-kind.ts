// The kind of a dead letter's error, as the status page shows it: the stored error text can quote row values
// (a transform's message, a value that does not fit), so the page shows a fixed label chosen by the text's shape,
// never any part of the text.
const KINDS: [RegExp, string | ((m: RegExpExecArray) => string)][] = [
  [/^turbopuffer refused the write \((\d{3})\)/, (m) => `turbopuffer refused (${m[1]})`],
  [/^not sent to turbopuffer/, 'over a turbopuffer limit'],
  [/^transform .* timed out after/, 'transform timed out'],
  [/^transform .* returned an invalid action/, 'transform returned an invalid action'],
  [/^transform .* threw /, 'transform threw'],
  [/^transform /, 'transform failed'],
  [/^column "[^"]*" \(/, "value does not fit the attribute's type"],
  [/^id \S+: /, 'embedding input'],
  [/^mapping \S+: delete on .* REPLICA IDENTITY/, 'id not in the replica identity'],
  [/^mapping \S+: (insert|update|delete) on /, 'bad id'],
  [/not valid UTF-8|cannot be decoded|undecodable/, 'undecodable value'],
  [/^the row was deleted meanwhile/, 'retry of a deleted row failed'],
]

/** A short, fixed description of a dead letter's error that never repeats any part of the text. */
export function deadLetterKind(error: string): string {
  for (const [re, label] of KINDS) {
    const m = re.exec(error)
    if (m) return typeof label === 'string' ? label : label(m)
  }
  return 'other'
}
