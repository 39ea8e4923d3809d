import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RUNTIME_GLOBAL } from '@mapscale/worker-server/runtime';
import { ShippingError } from './errors.js';

/** A work function's module, bundled for workers that have none of the app's files. */
export interface Bundle {
  hash: string;
  source: Uint8Array;
  external: string[];
}


/**
 * The bundle's stand-in for the `mapscale` package: every name the package exports, so a module
 * that also holds app code (`import { Processor, WorkFunction } from 'mapscale'`) bundles. What the
 * worker provides (WorkFunction, the error classes) is the worker's own; constants are copied; any
 * other function throws when used, because top-level app code in the module runs on every worker
 * that imports it.
 */
async function runtimeModuleSource(): Promise<string> {
  const surface = await import('./index.js') as Record<string, unknown>;
  const lines = [
    `const runtime = globalThis[Symbol.for(${JSON.stringify(RUNTIME_GLOBAL)})];`,
    `if (!runtime) throw new Error('this bundle runs only inside a MapScale worker');`,
    'const unavailable = (name) => function () {',
    '  throw new Error(`${name} from \'mapscale\' cannot be used inside a worker: a worker imports the module that ' +
      'defines the work function, so code at its top level runs there too. Keep the app (new Processor, map) in ' +
      'another module, or behind a check that it is the main module.`);',
    '};',
  ];
  for (const [name, value] of Object.entries(surface).sort(([a], [b]) => a.localeCompare(b))) {
    const fallback = typeof value === 'function' ? `unavailable(${JSON.stringify(name)})` : JSON.stringify(value) ?? 'undefined';
    lines.push(`export const ${name} = runtime.${name} ?? ${fallback};`);
  }
  return `${lines.join('\n')}\n`;
}

/** Packages whose presence marks a native addon: such a package runs only as installed on the worker host. */
const NATIVE_LOADERS = ['node-gyp-build', 'bindings', 'prebuild-install', 'node-pre-gyp', '@mapbox/node-pre-gyp', 'node-gyp-build-optional-packages'];

function packageRoot(resolvedFile: string): string | null {
  for (let dir = dirname(resolvedFile); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
  }
  return null;
}

function isNativePackage(resolvedFile: string): boolean {
  const root = packageRoot(resolvedFile);
  if (!root) return false;
  if (existsSync(join(root, 'binding.gyp'))) return true;
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { gypfile?: boolean; dependencies?: Record<string, string> };
    return pkg.gypfile === true || NATIVE_LOADERS.some((name) => pkg.dependencies?.[name] !== undefined);
  } catch {
    return false;
  }
}

/** The bare package name of a specifier ("@scope/pkg/sub" → "@scope/pkg"). */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/**
 * Bundles the module at `moduleUrl` with everything it imports, except Node built-ins, the
 * modules listed in `external`, and packages with native addons (found by their build files),
 * which workers import as installed on their host.
 */
export async function bundleModule(moduleUrl: string, className: string, external: readonly string[]): Promise<Bundle> {
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch (error) {
    throw new ShippingError(`bundling ${className}'s module needs esbuild, which could not be loaded: ${(error as Error).message}`, { cause: error });
  }
  const entry = fileURLToPath(moduleUrl);
  const runtimeSource = await runtimeModuleSource();
  const externals = new Set(external.map(packageName));
  try {
    const result = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'node',
      target: `node${process.versions.node.split('.')[0]}`,
      logLevel: 'silent',
      plugins: [{
        name: 'mapscale-workers',
        setup(build) {
          build.onResolve({ filter: /^mapscale$/ }, () => ({ path: 'mapscale', namespace: 'mapscale-runtime' }));
          build.onLoad({ filter: /.*/, namespace: 'mapscale-runtime' }, () => ({ contents: runtimeSource, loader: 'js' }));
          build.onResolve({ filter: /^[^./]/ }, async (args) => {
            if (args.namespace === 'mapscale-runtime' || args.path.startsWith('node:')) return undefined;
            const name = packageName(args.path);
            if (externals.has(name)) return { path: args.path, external: true };
            if (args.pluginData === 'resolving') return undefined;
            const resolved = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, pluginData: 'resolving' });
            if (resolved.errors.length === 0 && resolved.path && isNativePackage(resolved.path)) {
              externals.add(name);
              return { path: args.path, external: true };
            }
            return undefined;
          });
        },
      }],
    });
    const source = result.outputFiles[0]!.contents;
    return { hash: createHash('sha256').update(source).digest('hex'), source, external: [...externals].sort() };
  } catch (error) {
    throw new ShippingError(`cannot bundle the module of ${className} (${moduleUrl}): ${(error as Error).message}`, { cause: error });
  }
}
