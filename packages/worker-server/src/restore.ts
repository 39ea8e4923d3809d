import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { pathToFileURL } from 'node:url';
import { createCodec, type ShippedCode, type SourceOrigin } from '@mapscale/protocol';
import { WorkFunction } from './work-function.js';
import { ModuleScopeError, RestoreError } from './errors.js';
import { RUNTIME_GLOBAL, RUNTIME_SURFACE } from './runtime.js';

/** What an instance thread drives: the restored work function, with its lifecycle hooks. */
export interface RunnableWorkFunction {
  setup?(): unknown;
  call(job: unknown): unknown;
  cleanup?(): unknown;
}

export interface RestoredWorkFunction {
  instance: RunnableWorkFunction;
  /**
   * By-value code cannot see its module's scope: a ReferenceError from it is explained, unless its
   * free names were analysed when the Processor was constructed (then it does not come from there).
   */
  byValue: boolean;
}

const codec = createCodec();

/** What `import { … } from 'mapscale'` means inside a bundle (see the coordinator's bundling). */
(globalThis as Record<symbol, unknown>)[Symbol.for(RUNTIME_GLOBAL)] = RUNTIME_SURFACE;

export async function restoreWorkFunction(code: ShippedCode, bundlePath?: string): Promise<RestoredWorkFunction> {
  switch (code.kind) {
    case 'bundle': {
      if (!bundlePath) throw new RestoreError('bundle not available on this daemon');
      // CommonJS code inside the bundle calls require(); it resolves from the bundle cache's place.
      (globalThis as { require?: NodeRequire }).require ??= createRequire(bundlePath);
      let mod: Record<string, unknown>;
      try {
        mod = await import(pathToFileURL(bundlePath).href);
      } catch (error) {
        const missing = /Cannot find (?:package|module) '([^']+)'/.exec((error as Error).message)?.[1];
        throw new RestoreError(missing
          ? `module "${missing}" is not installed on worker host ${hostname()} (the work function's bundle leaves it external: install it where the daemon's bundle cache can resolve it)`
          : `cannot load the work function's bundle on ${hostname()}: ${(error as Error).message}`, { cause: error });
      }
      const cls = mod[code.exportName];
      if (typeof cls !== 'function') throw new RestoreError(`the bundle has no exported class "${code.exportName}": export the work function class under its own name`);
      return { instance: instantiate(cls, code.state), byValue: false };
    }
    case 'function': {
      checkGlobals(code.globals);
      const fn = evaluate(code.source, [], [], code.origin, 'function');
      if (typeof fn !== 'function') throw new RestoreError('shipped function source did not evaluate to a function');
      return { instance: { call: fn as (job: unknown) => unknown }, byValue: code.globals === undefined };
    }
    case 'class': {
      checkGlobals(code.globals);
      let parent: unknown = WorkFunction;
      for (const { name, source, origin } of code.classes) {
        parent = evaluateClass(name, source, parent, origin);
      }
      return { instance: instantiate(parent as Function, code.state), byValue: code.globals === undefined };
    }
    case 'module': {
      let mod: Record<string, unknown>;
      try {
        mod = await import(code.url);
      } catch (error) {
        throw new RestoreError(`cannot import work function module ${code.url} on this host: ${(error as Error).message}`, { cause: error });
      }
      const cls = mod[code.exportName];
      if (typeof cls !== 'function') {
        throw new RestoreError(`module ${code.url} has no exported class "${code.exportName}": export the work function class under its own name`);
      }
      return { instance: instantiate(cls, code.state), byValue: false };
    }
    default:
      throw new RestoreError(`unknown shipped code kind ${JSON.stringify((code as { kind: unknown }).kind)}`);
  }
}

/** Like pickle: the prototype and the shipped state, without running the constructor again. */
function instantiate(cls: Function, state: Uint8Array): RunnableWorkFunction {
  const instance = Object.create(cls.prototype as object) as RunnableWorkFunction;
  const fields = codec.unpack(state);
  if (fields !== null && typeof fields === 'object') Object.assign(instance, fields);
  if (typeof instance.call !== 'function') throw new RestoreError(`${cls.name} has no call(job) method`);
  return instance;
}

/**
 * Evaluates one class of the chain with its `extends` target bound to the already-restored parent.
 * The target is found by name in the source (`extends WorkFunction`, `extends ms.WorkFunction`,
 * `extends MyBase`), so aliases and namespace imports work too.
 */
function evaluateClass(name: string, source: string, parent: unknown, origin: SourceOrigin | undefined): unknown {
  const match = /^class\s*(?:[\w$]+\s*)?extends\s+([\w$]+)((?:\s*\.\s*[\w$]+)*)/.exec(source);
  if (!match) {
    throw new RestoreError(`class ${name} must extend its parent by a plain name (e.g. "extends WorkFunction") to be shipped by value`);
  }
  const root = match[1]!;
  const path = (match[2] ?? '').split('.').map((s) => s.trim()).filter(Boolean);
  let binding: unknown = parent;
  for (const key of path.reverse()) binding = { [key]: binding };
  return evaluate(source, [root], [binding], origin, name);
}

/** Past these, shipped source is not placed at its file's position (a file of 10 million lines is no source file). */
const MAX_ORIGIN_LINE = 10_000_000;
const MAX_ORIGIN_COLUMN = 100_000;

/** An indirect eval: global scope, no access to this module's. */
const globalEval = eval;

/**
 * Evaluates shipped source with `names` bound to `values`, named after the file it came from
 * (`//# sourceURL`) and placed at the line and column it had there, so the frames of a stack read
 * `at Power.setup (file:///app/work.js:12:11)`, the user's own file and line, not an eval inside
 * this module. Without an origin it is named `mapscale-shipped/<name>.js`, lines counted from the
 * source's first.
 */
function evaluate(source: string, names: string[], values: unknown[], origin: SourceOrigin | undefined, name: string): unknown {
  const url = typeof origin?.url === 'string' ? origin.url : `mapscale-shipped/${name || 'function'}.js`;
  // The wrapper takes line 1; a source on line 1 of its file keeps its lines but not its first line's columns.
  // Bounded, so a wrong origin costs a misplaced line number and never a string of gigabytes.
  const line = typeof origin?.line === 'number' && origin.line > 1 && origin.line <= MAX_ORIGIN_LINE ? Math.floor(origin.line) : 1;
  const column = line > 1 && typeof origin?.column === 'number' && origin.column <= MAX_ORIGIN_COLUMN ? Math.max(0, Math.floor(origin.column)) : 0;
  const code = `(function (${names.join(', ')}) { "use strict"; return (${'\n'.repeat(line - 1)}${' '.repeat(column)}${source}\n); })\n//# sourceURL=${url.replace(/\s/g, encodeURIComponent)}`;
  try {
    return (globalEval(code) as (...args: unknown[]) => unknown)(...values);
  } catch (error) {
    throw new RestoreError(`shipped source does not evaluate on this worker: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Globals the shipped code reads (found when the Processor was constructed) that this worker lacks:
 * the app's Node has them, or the app defined them, and this host does not. Refused here, before
 * setup, rather than as a ReferenceError in whichever job meets it first.
 */
function checkGlobals(globals: unknown): void {
  if (!Array.isArray(globals)) return;
  const missing = globals.filter((name): name is string => typeof name === 'string' && !(name in globalThis));
  if (missing.length === 0) return;
  throw new ModuleScopeError(
    `the work function uses ${missing.map((n) => `"${n}"`).join(', ')}, which the app has as global(s) and this worker ` +
    `(${hostname()}, Node ${process.version}) does not: define it inside the work function (e.g. in setup()), ` +
    `or run the workers on the app's Node release`,
    { identifiers: missing },
  );
}

/** Turns "x is not defined" from by-value code into advice on how to ship it. */
export function explainScopeError(error: unknown, restored: RestoredWorkFunction): unknown {
  if (!restored.byValue || !(error instanceof ReferenceError)) return error;
  const name = /^(\S+) is not defined/.exec(error.message)?.[1];
  if (!name) return error;
  return new ModuleScopeError(
    `the work function uses "${name}" from its module's scope, which is not shipped with a class sent by value. ` +
    `Move it inside the class (e.g. "await import(...)" in setup()), or add "static module = import.meta.url" ` +
    `to the class and export it, so workers import its module instead`,
    { cause: error },
  );
}
