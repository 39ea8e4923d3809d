/**
 * Bundles the two entry points whose load time every `new Processor(fn, N)` waits for — the local
 * daemon's main thread (`local-entry`) and each instance thread (`instance-thread`) — into one file
 * each, after tsc. Node 20 loads one file of ~300 KB in well under half the time it takes to resolve
 * and load the same code as ~40 ES modules (W4 in `pnpm bench`). `inputs.json` lists what each bundle
 * was made from, so `entry.ts` uses a bundle only while none of those files is newer than it: a
 * `tsc -b` without this step falls back to the plain files instead of running stale code.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const dist = resolve(dirname(fileURLToPath(import.meta.url)), '../dist');
const out = resolve(dist, 'bundled');
mkdirSync(out, { recursive: true });
const inputs = {};
for (const name of ['local-entry', 'instance-thread']) {
  const outfile = resolve(out, `${name}.js`);
  const result = await build({
    entryPoints: [resolve(dist, `${name}.js`)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    metafile: true,
    logLevel: 'warning',
    // Native addons stay where npm put them; msgpackr finds its optional one through require.
    external: ['msgpackr-extract'],
    banner: { js: "import { createRequire as __msCreateRequire } from 'node:module'; const require = __msCreateRequire(import.meta.url);" },
  });
  inputs[name] = Object.keys(result.metafile.inputs).map((input) => relative(out, resolve(input)));
}
writeFileSync(resolve(out, 'inputs.json'), JSON.stringify(inputs));
