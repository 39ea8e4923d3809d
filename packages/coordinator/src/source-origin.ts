import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { SourceOrigin } from '@mapscale/protocol';

/** A file larger than this (a bundle of a whole app, say) is not read to find a class in it. */
const MAX_FILE_BYTES = 32 * 1024 * 1024;
/** MapScale's own files appear in every such stack and never hold the user's code. */
const OWN_DIRS = [new URL('.', import.meta.url).href, new URL('.', import.meta.resolve('@mapscale/worker-server/runtime')).href];

/** The files a captured stack runs through, as file: URLs, in order, without Node's or MapScale's own. */
export function stackFiles(stack: string | undefined): string[] {
  const files: string[] = [];
  for (const line of stack?.split('\n') ?? []) {
    const match = /((?:file:\/\/|\/)[^\s()]+?):\d+:\d+\)?\s*$/.exec(line);
    if (!match) continue;
    const url = match[1]!.startsWith('/') ? pathToFileURL(match[1]!).href : match[1]!;
    if (!files.includes(url) && !OWN_DIRS.some((dir) => url.startsWith(dir))) files.push(url);
  }
  return files;
}

/** Reads each file once per shipping, and none that is too large or not there. */
export function fileReader(): (url: string) => string | undefined {
  const cache = new Map<string, string | undefined>();
  return (url) => {
    if (!cache.has(url)) {
      let text: string | undefined;
      try {
        const path = fileURLToPath(url);
        if (statSync(path).size <= MAX_FILE_BYTES) text = readFileSync(path, 'utf8');
      } catch {
        text = undefined;
      }
      cache.set(url, text);
    }
    return cache.get(url);
  };
}

/**
 * The first of `files` that holds `source` (a class's or function's own text, as
 * Function.prototype.toString gives it: the running file's very characters), and where it starts
 * there. Undefined when none does (a file changed since it was loaded, code made by eval or a loader
 * that compiles in memory): the worker then names the source after the class instead.
 */
export function locateSource(source: string, files: readonly string[], read: (url: string) => string | undefined): SourceOrigin | undefined {
  for (const url of files) {
    const text = read(url);
    const at = text?.indexOf(source) ?? -1;
    if (at < 0) continue;
    let line = 1;
    for (let i = text!.indexOf('\n'); i !== -1 && i < at; i = text!.indexOf('\n', i + 1)) line++;
    return { url, line, column: at - (text!.lastIndexOf('\n', at - 1) + 1) };
  }
  return undefined;
}
