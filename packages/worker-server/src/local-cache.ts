import { createHash } from 'node:crypto';
import { mkdirSync, readlinkSync, statSync, symlinkSync, unlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';

/** MapScale's cache root for this user: $XDG_CACHE_HOME/mapscale, else ~/.cache/mapscale (the XDG base directory spec). */
export function userCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'mapscale');
}

/**
 * Where a local daemon whose app runs in `cwd` keeps its bundles: in the user's cache (created 0700),
 * never in `cwd` itself, and one directory per `cwd`.
 *
 * A bundle's external packages resolve from the bundle's directory upwards, as they did when the
 * cache was `cwd/.mapscale-cache`: from `cwd`'s `node_modules` and those of its ancestors. So that
 * they still do, the directory is a chain with one level per such `node_modules`, each level holding
 * a `node_modules` link to one of them (the deepest level, where the bundles are, to the nearest):
 *   <root>/local/<hash of cwd>/node_modules -> /work/node_modules
 *   <root>/local/<hash of cwd>/r/node_modules -> /work/app/node_modules     (bundles here)
 * Node resolves through the links to the packages' real paths, so their own imports resolve as at home.
 */
export function localBundleDir(cwd: string, root: string = userCacheRoot()): string {
  const nearestFirst = nodeModulesAbove(cwd);
  let dir = join(root, 'local', createHash('sha256').update(cwd).digest('hex').slice(0, 16));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (let i = nearestFirst.length - 1; i >= 0; i--) {
    linkTo(join(dir, 'node_modules'), nearestFirst[i]!);
    if (i === 0) break;
    dir = join(dir, 'r');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
  return dir;
}

/** The `node_modules` directories of `dir` and its ancestors, nearest first. */
function nodeModulesAbove(dir: string): string[] {
  const found: string[] = [];
  for (let at = dir; ; at = dirname(at)) {
    const candidate = join(at, 'node_modules');
    if (statSync(candidate, { throwIfNoEntry: false })?.isDirectory()) found.push(candidate);
    if (dirname(at) === at) return found;
  }
}

/** Makes `link` a symlink to `target`, replacing one that points elsewhere; another daemon making the same link at once is fine. */
function linkTo(link: string, target: string): void {
  let current: string | null = null;
  try {
    current = readlinkSync(link);
  } catch {
    // none yet
  }
  if (current === target) return;
  if (current !== null) unlinkSync(link);
  try {
    symlinkSync(target, link, 'dir');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || readlinkSync(link) !== target) throw error;
  }
}
