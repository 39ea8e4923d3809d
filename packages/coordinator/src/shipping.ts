import { createCodec, type ShippedCode } from '@mapscale/protocol';
import { isWorkFunctionBase } from '@mapscale/worker-server/runtime';
import { ShippingError } from './errors.js';

const codec = createCodec();

/** A plain function, or an instance of a WorkFunction subclass. */
export type WorkFunctionLike = ((job: any) => unknown) | { call(job: any): unknown };

/**
 * Turns a work function into what travels to workers, once per worker at setup.
 * Classes go by value (their sources up to WorkFunction, plus the instance's own state), or by
 * reference when they declare `static module = import.meta.url`.
 */
export function shipWorkFunction(workFn: WorkFunctionLike): ShippedCode {
  if (typeof workFn === 'function') return shipFunction(workFn);
  if (typeof workFn !== 'object' || workFn === null || typeof workFn.call !== 'function') {
    throw new ShippingError('the work function must be a WorkFunction instance or a function (job) => result');
  }
  const cls = workFn.constructor as Function & { module?: unknown; external?: unknown };
  const state = packState(workFn, cls.name);
  if (cls.module !== undefined) {
    if (typeof cls.module !== 'string' || !/^(file|data|https?):/.test(cls.module)) {
      throw new ShippingError(`${cls.name}.module must be the module's URL: write "static module = import.meta.url"`);
    }
    const external = cls.external ?? [];
    if (!Array.isArray(external) || external.some((e) => typeof e !== 'string')) {
      throw new ShippingError(`${cls.name}.external must be a list of module names, e.g. static external = ['sharp']`);
    }
    return { kind: 'module', url: cls.module, exportName: cls.name, state, external: external as string[] };
  }
  return { kind: 'class', classes: classChain(cls), state };
}

function shipFunction(fn: Function): ShippedCode {
  const source = fn.toString();
  if (/\{\s*\[native code\]\s*\}$/.test(source)) {
    throw new ShippingError(`function ${fn.name || '(anonymous)'} is native or bound and has no source to ship; wrap it in an arrow function`);
  }
  if (!/^(async\s+)?(function\b|\(|[\w$]+\s*=>|async\s*\()/.test(source)) {
    throw new ShippingError(`function ${fn.name} is a method shorthand; pass an arrow function or a function expression`);
  }
  return { kind: 'function', source };
}

/** The user's class and its ancestors, base first, up to (not including) WorkFunction. */
function classChain(cls: Function): { name: string; source: string }[] {
  const chain: { name: string; source: string }[] = [];
  for (let c: Function = cls; !isWorkFunctionBase(c); c = Object.getPrototypeOf(c) as Function) {
    if (c === Function.prototype || c === Object || typeof c !== 'function') {
      throw new ShippingError(`${cls.name} does not extend WorkFunction; import { WorkFunction } from 'mapscale' and extend it`);
    }
    const source = c.toString();
    if (!source.startsWith('class')) {
      throw new ShippingError(`${c.name} is not a class declaration and cannot be shipped by value`);
    }
    if (/(^|[^\w$'"`])#[A-Za-z_$][\w$]*\s*[;=(]/.test(source)) {
      throw new ShippingError(`${c.name} has #private members, which cannot be shipped; use ordinary (or TypeScript "private") fields`);
    }
    chain.unshift({ name: c.name, source });
  }
  return chain;
}

function packState(instance: object, className: string): Uint8Array {
  const state: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(instance)) {
    if (typeof value === 'function' || typeof value === 'symbol') {
      throw new ShippingError(`${className}.${key} holds a ${typeof value}, which cannot be shipped; create it in setup() instead`);
    }
    state[key] = value;
  }
  try {
    return codec.pack(state);
  } catch (error) {
    throw new ShippingError(`the state of ${className} cannot be serialized: ${(error as Error).message}`, { cause: error });
  }
}
