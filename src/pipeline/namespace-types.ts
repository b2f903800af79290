// What types a namespace's attributes already have, so that a write never declares a type that conflicts with one
// (turbopuffer refuses the whole request then: after `ALTER COLUMN qty TYPE text` every later write would fail).
import type { Sink } from '../turbopuffer/types.ts'

type Known = Map<string, Promise<Map<string, string>>>
/** namespaces whose types are kept per sink (a namespace per tenant: memory stays bounded whatever their number) */
export const MAX_NAMESPACES = 4096
const bySink = new WeakMap<Sink, Known>()

/** The namespace's attribute types (name → type), read once per sink and kept up to date by `remember`. */
export function namespaceTypes(sink: Sink, namespace: string): Promise<Map<string, string>> {
  let known = bySink.get(sink)
  if (!known) bySink.set(sink, known = new Map())
  let types = known.get(namespace)
  if (types) {
    // most recently used last: with a namespace per tenant the oldest are dropped (read again when written again)
    known.delete(namespace)
    known.set(namespace, types)
  } else {
    if (known.size >= MAX_NAMESPACES) known.delete(known.keys().next().value!)
    types = sink.attributeTypes
      ? sink.attributeTypes(namespace).then((t) => new Map(Object.entries(t)))
      : Promise.resolve(new Map())
    // a failed read is read again next time
    types.catch(() => known!.delete(namespace))
    known.set(namespace, types)
  }
  return types
}

/** After a successful write: the types it declared are the namespace's now (where it had none). */
export async function rememberTypes(sink: Sink, namespace: string, declared: Record<string, { type: string }>) {
  const types = await namespaceTypes(sink, namespace)
  for (const [name, spec] of Object.entries(declared)) if (!types.has(name)) types.set(name, spec.type)
}

/** After a refusal: read the namespace's types again before the next write (someone else may have set them). */
export function forgetTypes(sink: Sink, namespace: string): void {
  bySink.get(sink)?.delete(namespace)
}
