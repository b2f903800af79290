// What types a namespace's attributes already have, so that a write never declares a type that conflicts with one
// (turbopuffer refuses the whole request then: after `ALTER COLUMN qty TYPE text` every later write would fail).
//
// A namespace per tenant (issue 24): reading each tenant's schema before the process's first write there was one more
// request and round trip per namespace, which doubled commit→visible for a tenant's first change after a start and
// cost a request per tenant. A tenant namespace's types are taken as none instead (most were written with the
// mapping's own types, or are new): a write that conflicts with types it has is refused whole (`whole`, not split to
// find bad rows), and the writer then reads its types and writes the rows again (pipeline/writer.ts).
import type { Mapping } from '../config/load.ts'
import type { Sink } from '../turbopuffer/types.ts'

type Known = Map<string, Promise<Map<string, string>>>
/** namespaces whose types are kept per sink (a namespace per tenant: memory stays bounded whatever their number) */
export const MAX_NAMESPACES = 4096

interface SinkTypes {
  known: Known
  /** namespaces whose types were taken as none, not read, and not written since */
  assumed: Set<string>
}
const bySink = new WeakMap<Sink, SinkTypes>()

function state(sink: Sink): SinkTypes {
  let s = bySink.get(sink)
  if (!s) bySink.set(sink, s = { known: new Map(), assumed: new Set() })
  return s
}

/** Caches new `types` as the namespace's (most recently used last); a failed read is read again next time. */
function keep(s: SinkTypes, namespace: string, types: Promise<Map<string, string>>): Promise<Map<string, string>> {
  s.known.delete(namespace)
  if (s.known.size >= MAX_NAMESPACES) {
    const oldest = s.known.keys().next().value!
    s.known.delete(oldest)
    s.assumed.delete(oldest)
  }
  types.catch(() => {
    if (s.known.get(namespace) === types) s.known.delete(namespace)
  })
  s.known.set(namespace, types)
  return types
}

function read(sink: Sink, namespace: string): Promise<Map<string, string>> {
  return sink.attributeTypes
    ? sink.attributeTypes(namespace).then((t) => new Map(Object.entries(t)))
    : Promise.resolve(new Map())
}

/**
 * The namespace's attribute types (name → type), read once per sink and kept up to date by `remember`. A namespace of
 * a tenant mapping (`[target] namespace` template) is not read: taken to have none until a write says otherwise.
 */
export function namespaceTypes(
  sink: Sink,
  namespace: string,
  mapping?: Pick<Mapping, 'namespaceTemplate'>,
): Promise<Map<string, string>> {
  const s = state(sink)
  const types = s.known.get(namespace)
  if (types) {
    // most recently used last: with a namespace per tenant the oldest are dropped (read again when written again)
    s.known.delete(namespace)
    s.known.set(namespace, types)
    return types
  }
  if (mapping?.namespaceTemplate && sink.attributeTypes) {
    s.assumed.add(namespace)
    return keep(s, namespace, Promise.resolve(new Map()))
  }
  return keep(s, namespace, read(sink, namespace))
}

/** Whether the namespace's types were taken as none (not read) and no write there succeeded since. */
export function typesWereAssumed(sink: Sink, namespace: string): boolean {
  return bySink.get(sink)?.assumed.has(namespace) ?? false
}

/** After a successful write: the types it declared are the namespace's now (where it had none). */
export async function rememberTypes(sink: Sink, namespace: string, declared: Record<string, { type: string }>) {
  const types = await namespaceTypes(sink, namespace)
  for (const [name, spec] of Object.entries(declared)) if (!types.has(name)) types.set(name, spec.type)
  bySink.get(sink)?.assumed.delete(namespace)
}

/**
 * After a refusal: the namespace's types are read again (someone else may have set them, or they were assumed);
 * resolves once read (a failed read is read again at the next write).
 */
export async function forgetTypes(sink: Sink, namespace: string): Promise<void> {
  const s = state(sink)
  s.assumed.delete(namespace)
  await keep(s, namespace, read(sink, namespace)).catch(() => {})
}
