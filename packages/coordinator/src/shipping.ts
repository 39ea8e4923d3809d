import { createCodec, type ShippedCode, type SourceOrigin } from '@mapscale/protocol';
import { CONSTRUCTED_AT, ModuleScopeError, isWorkFunctionBase } from '@mapscale/worker-server/runtime';
import { ShippingError } from './errors.js';
import { analyseScope, globalNamesOf, type ScopeReport } from './module-scope.js';
import { fileReader, locateSource, stackFiles } from './source-origin.js';

const codec = createCodec();

/** A plain function, or an instance of a WorkFunction subclass. */
export type WorkFunctionLike = ((job: any) => unknown) | { call(job: any): unknown };

/**
 * Turns a work function into what travels to workers, once per worker at setup.
 * Classes go by value (their sources up to WorkFunction, plus the instance's own state), or by
 * reference when they declare `static module = import.meta.url`.
 *
 * Code sent by value is checked here for names from its module's scope (ModuleScopeError, at
 * once, rather than a ReferenceError in some job), and is located in its file, so workers name it
 * after that file in stacks. `callerStack`: where the Processor was constructed, a place to look.
 */
export function shipWorkFunction(workFn: WorkFunctionLike, callerStack?: string): ShippedCode {
  const files = () => [...stackFiles((workFn as { [CONSTRUCTED_AT]?: { stack?: string } })[CONSTRUCTED_AT]?.stack), ...stackFiles(callerStack)];
  if (typeof workFn === 'function') return shipFunction(workFn, files());
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
  const chain = classChain(cls);
  const globals = checkScope(chain, 'class');
  const read = fileReader();
  const where = files();
  const classes = chain.map(({ name, source }) => withOrigin({ name, source }, locateSource(source, where, read)));
  return globals === undefined ? { kind: 'class', classes, state } : { kind: 'class', classes, state, globals };
}

function shipFunction(fn: Function, files: string[]): ShippedCode {
  const source = fn.toString();
  if (/\{\s*\[native code\]\s*\}$/.test(source)) {
    throw new ShippingError(`function ${fn.name || '(anonymous)'} is native or bound and has no source to ship; wrap it in an arrow function`);
  }
  if (!/^(async\s+)?(function\b|\(|[\w$]+\s*=>|async\s*\()/.test(source)) {
    throw new ShippingError(`function ${fn.name} is a method shorthand; pass an arrow function or a function expression`);
  }
  const globals = checkScope([{ name: fn.name, source }], 'function');
  const shipped = withOrigin({ kind: 'function' as const, source }, locateSource(source, files, fileReader()));
  return globals === undefined ? shipped : { ...shipped, globals };
}

function withOrigin<T extends object>(item: T, origin: SourceOrigin | undefined): T & { origin?: SourceOrigin } {
  return origin === undefined ? item : { ...item, origin };
}

/**
 * Refuses code that reads names from its module's scope, naming them, and returns the globals it
 * reads (for each worker to check it has them), or undefined if some source could not be analysed.
 */
function checkScope(sources: { name: string; source: string }[], kind: 'class' | 'function'): string[] | undefined {
  const globalNames = globalNamesOf();
  const reports: [string, ScopeReport][] = [];
  for (const { name, source } of sources) {
    const report = analyseScope(source, globalNames);
    if (report === undefined) return undefined;
    reports.push([name, report]);
  }
  const offending = reports.filter(([, report]) => report.moduleScope.length > 0);
  if (offending.length > 0) {
    const identifiers = [...new Set(offending.flatMap(([, report]) => report.moduleScope))];
    const uses = offending.map(([name, report]) => `${name || 'the function'} uses ${report.moduleScope.map((n) => `"${n}"`).join(', ')}`).join('; ');
    throw new ModuleScopeError(
      `${uses} from its module's scope, which is not shipped with a ${kind} sent by value (only globals such as process, Buffer or fetch are there on a worker). ` +
      (kind === 'class'
        ? 'Move it inside the class (e.g. "await import(...)" in setup()), or add "static module = import.meta.url" to the class and export it, so workers import its module instead'
        : 'Move it inside the function (e.g. "await import(...)"), or write a WorkFunction class with "static module = import.meta.url", so workers import its module'),
      { identifiers },
    );
  }
  return [...new Set(reports.flatMap(([, report]) => report.globals))];
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
