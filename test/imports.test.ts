import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

/**
 * What `import 'mapscale'` loads, seen by a module hook in a fresh process: what an app pays at its
 * start before it maps anything (issue 13). What only some apps need is loaded when first used.
 */
const HOOKS = `export async function load(url, context, next) { process._rawDebug('LOADED ' + url); return next(url, context); }`;
const REGISTER = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOKS)}`)});`;

function loadedBy(code: string): string[] {
  const cwd = fileURLToPath(new URL('../packages/coordinator/', import.meta.url));
  // The hooks run on the loader's own thread; _rawDebug writes to stderr from there.
  const child = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(REGISTER)}`, '--input-type=module', '-e', code],
    { cwd, timeout: 20_000, encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`the probe failed (${child.status ?? child.signal}): ${child.stderr}`);
  return child.stderr.split('\n').filter((l) => l.startsWith('LOADED ')).map((l) => l.slice(7));
}

describe("what import 'mapscale' loads", () => {
  let loaded: string[];
  before(function () {
    this.timeout(30_000);
    loaded = loadedBy("await import('mapscale');");
  });

  it('loads the coordinator and nothing it needs only later: no daemon server, logger, TLS, bundler, parser or CLI parser', () => {
    expect(loaded.some((url) => url.includes('/coordinator/dist/index.js')), 'the coordinator itself').to.equal(true);
    const unwanted: [string, (url: string) => boolean][] = [
      ['the daemon server', (url) => /worker-server\/dist\/(server|session|embedded-daemon)\.js$/.test(url)],
      ['pino', (url) => /\/pino\//.test(url)],
      ['node:tls', (url) => url === 'node:tls'],
      ['esbuild', (url) => /\/esbuild\//.test(url)],
      ['acorn', (url) => /\/acorn(-globals)?\//.test(url)],
      ['yargs', (url) => /\/yargs\//.test(url)],
      ['the dashboard\'s server', (url) => url === 'node:http' || /coordinator\/dist\/dashboard\/(server|snapshot|assets)\.js$/.test(url)],
    ];
    for (const [what, matches] of unwanted) expect(loaded.filter(matches), what).to.deep.equal([]);
  });
});
