/**
 * Where a value msgpack cannot carry sits inside a job or a result, and what it is: run only after
 * packing failed, to say why (the coordinator for jobs, an instance thread for results). One walker
 * for both sides, so a job and a result with the same defect are described in the same words.
 */
export interface Unserializable {
  /** An accessor chain from the root: `job.items[3].cb`, `result.get("k")`, `job.tags.values()[1]`. */
  path: string;
  valueType: 'function' | 'symbol' | 'circular' | 'object';
  /** What is there, in words (`a function (onDone)`, `a reference back to result.children`). */
  detail: string;
}

/**
 * The first place in `value` that msgpack cannot encode, walked the way msgpackr packs: arrays,
 * Maps and Sets by element, errors by name, message and cause, objects with a toJSON by what it
 * returns, others by own enumerable properties. Shared (not circular) references are fine: they are
 * packed twice. The walk keeps a stack of its own, so a value nested deeper than the packer's stack
 * cannot overflow it; undefined when nothing is found (a value too deep for the packer, say).
 */
export function findUnserializable(value: unknown, root: string): Unserializable | undefined {
  const stack: { value: unknown; path: string; leave?: true }[] = [{ value, path: root }];
  const ancestors = new Map<object, string>();
  const done = new Set<object>();
  while (stack.length > 0) {
    const { value: current, path, leave } = stack.pop()!;
    if (leave) {
      ancestors.delete(current as object);
      done.add(current as object);
      continue;
    }
    if (typeof current === 'function') return { path, valueType: 'function', detail: `a function (${current.name || 'anonymous'})` };
    if (typeof current === 'symbol') return { path, valueType: 'symbol', detail: `a Symbol (${current.toString()})` };
    if (typeof current !== 'object' || current === null || done.has(current) || isLeaf(current)) continue;
    const ancestor = ancestors.get(current);
    if (ancestor !== undefined) return { path, valueType: 'circular', detail: `a reference back to ${ancestor === root ? `the ${root} itself` : ancestor} (a circular structure)` };
    ancestors.set(current, path);
    stack.push({ value: current, path, leave: true });
    let children: [string, unknown][];
    try {
      children = childrenOf(current, path);
    } catch (error) {
      return { path, valueType: 'object', detail: `an object that cannot be read (${error instanceof Error ? error.message : String(error)})` };
    }
    // Reversed, so the first child is looked at first and the path named is the first culprit.
    for (let i = children.length - 1; i >= 0; i--) stack.push({ value: children[i]![1], path: children[i]![0] });
  }
  return undefined;
}

/** Whether packing failed for want of stack: the value is nested deeper than the packer can go. */
export function isTooDeep(error: unknown): boolean {
  return error instanceof RangeError && /call stack/i.test(error.message);
}

/** Values msgpack packs as a whole, with nothing inside to look at. */
function isLeaf(value: object): boolean {
  return ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof Date || value instanceof RegExp;
}

function childrenOf(value: object, path: string): [string, unknown][] {
  if (Array.isArray(value)) return value.map((item, i) => [`${path}[${i}]`, item]);
  if (value instanceof Map) {
    const out: [string, unknown][] = [];
    let i = 0;
    for (const [key, item] of value) out.push([`${path}.keys()[${i}]`, key], [`${path}.get(${describeKey(key, i++)})`, item]);
    return out;
  }
  if (value instanceof Set) return [...value].map((item, i) => [`${path}.values()[${i}]`, item]);
  if (value instanceof Error) return [[`${path}.name`, value.name], [`${path}.message`, value.message], [`${path}.cause`, value.cause]];
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (value.constructor !== Object && typeof toJSON === 'function') return [[`${path}.toJSON()`, toJSON.call(value)]];
  return Object.keys(value).map((key) => [`${path}${/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`}`, (value as Record<string, unknown>)[key]]);
}

function describeKey(key: unknown, index: number): string {
  if (typeof key === 'string') return JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key);
  if (typeof key === 'number' || typeof key === 'boolean' || typeof key === 'bigint' || key === null || key === undefined) return String(key);
  return `<key #${index}>`;
}
