import { createRequire } from 'node:module';
import type { Node } from 'acorn';
import type findGlobalsType from 'acorn-globals';

/**
 * Loaded on the first analysis, not with `import 'mapscale'`: only a Processor that ships code by
 * value needs a parser.
 */
let analyser: { parse: typeof import('acorn').parse; findGlobals: typeof findGlobalsType } | undefined;
function loadAnalyser(): NonNullable<typeof analyser> {
  if (!analyser) {
    const require = createRequire(import.meta.url);
    analyser = { parse: (require('acorn') as typeof import('acorn')).parse, findGlobals: require('acorn-globals') as typeof findGlobalsType };
  }
  return analyser;
}

/** What a source shipped by value reads from outside itself. */
export interface ScopeReport {
  /** Names it reads that it does not declare and that are no global: its module's, which do not travel. */
  moduleScope: string[];
  /** Globals it reads: each worker checks that it has them before setup (a host may run another Node). */
  globals: string[];
}

/** Read whatever their uses: what the language itself binds. */
const ALWAYS_BOUND = new Set(['this', 'arguments', 'undefined']);

/**
 * The free names of a class (or function) source, as the worker's restore sees it: there its
 * `extends` target is bound by name, and nothing else of its module is. Undefined when acorn cannot
 * parse it (then nothing is known before a job meets it). Scope analysis is acorn-globals', a solved
 * problem better not solved again with regular expressions.
 *
 * `globalNames`: what counts as a global, the names of `globalThis` (a worker thread has the same).
 * A name the source only reads after checking it with `typeof` (`typeof gc === 'function' && gc()`)
 * is its own business and counts as neither.
 */
export function analyseScope(source: string, globalNames: ReadonlySet<string>): ScopeReport | undefined {
  const { parse, findGlobals } = loadAnalyser();
  let program: Node;
  try {
    program = parse(`(${source}\n)`, { ecmaVersion: 'latest', sourceType: 'script' });
  } catch {
    return undefined;
  }
  const bound = new Set(ALWAYS_BOUND);
  const root = extendsRoot(program);
  if (root) bound.add(root);
  const report: ScopeReport = { moduleScope: [], globals: [] };
  for (const { name, nodes } of findGlobals(program)) {
    if (bound.has(name) || nodes.some(isTypeofOperand)) continue;
    (globalNames.has(name) ? report.globals : report.moduleScope).push(name);
  }
  return report;
}

/** Every name `globalThis` answers to, its prototype chain included. */
export function globalNamesOf(global: object = globalThis): Set<string> {
  const names = new Set<string>();
  for (let o: object | null = global; o !== null; o = Object.getPrototypeOf(o) as object | null) {
    for (const name of Object.getOwnPropertyNames(o)) names.add(name);
  }
  return names;
}

/** `WorkFunction` in `class X extends WorkFunction`, `ms` in `extends ms.WorkFunction`. */
function extendsRoot(program: Node): string | undefined {
  const expression = (program as unknown as { body: { expression?: { type: string; superClass?: Node | null } }[] }).body[0]?.expression;
  let target = expression?.type === 'ClassExpression' ? expression.superClass : undefined;
  while (target?.type === 'MemberExpression') target = (target as unknown as { object: Node }).object;
  return target?.type === 'Identifier' ? (target as unknown as { name: string }).name : undefined;
}

function isTypeofOperand(node: Node & { parents: Node[] }): boolean {
  const parent = node.parents[node.parents.length - 2] as (Node & { operator?: string }) | undefined;
  return parent?.type === 'UnaryExpression' && parent.operator === 'typeof';
}
