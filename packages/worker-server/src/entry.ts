import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type EntryName = 'local-entry' | 'instance-thread';

/** This package's dist directory, whether this module runs from it or from a bundle in dist/bundled. */
const HERE = new URL('.', import.meta.url);
const DIST = HERE.pathname.endsWith('/bundled/') ? new URL('..', HERE) : HERE;
const fresh = new Map<EntryName, boolean>();

/**
 * The file to start `name` from: its bundle (scripts/bundle-entries.mjs, about half the load time)
 * when one exists and none of the files it was made from is newer, else the plain module tsc wrote.
 */
export function entryPath(name: EntryName): URL {
  if (!fresh.has(name)) fresh.set(name, isFresh(name));
  return fresh.get(name) ? new URL(`bundled/${name}.js`, DIST) : new URL(`${name}.js`, DIST);
}

function isFresh(name: EntryName): boolean {
  try {
    const bundled = new URL('bundled/', DIST);
    const built = statSync(new URL(`${name}.js`, bundled)).mtimeMs;
    const inputs = (JSON.parse(readFileSync(new URL('inputs.json', bundled), 'utf8')) as Record<string, string[]>)[name];
    if (!Array.isArray(inputs) || inputs.length === 0) return false;
    const base = fileURLToPath(bundled);
    return inputs.every((input) => statSync(`${base}/${input}`).mtimeMs <= built);
  } catch {
    return false;
  }
}
