import { mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Processor, SetupError } from 'mapscale';
import { Describer } from './fixtures/bundled/work.js';
import { withDaemons } from './helpers/daemon.js';
import { tempDir } from './helpers/files.js';

const APP_DIR = fileURLToPath(new URL('./fixtures/bundled/', import.meta.url));
const isRoot = process.getuid?.() === 0;

describe('code shipping by module (bundles)', function () {
  before(function () {
    if (!isRoot) {
      console.warn('      skipped: hiding the app\'s files from the daemon needs root (mount namespaces); CI runs as root');
      this.skip();
    }
  });

  it('runs a class whose module imports local modules and an npm package on a daemon that cannot see the app\'s files', async () => {
    const cache = tempDir('mapscale-cache-');
    const home = tempDir('mapscale-daemon-home-');
    try {
      await withDaemons(1, { workers: 2, hide: [APP_DIR], cwd: home.path, args: ['--cache-dir', cache.path] }, async ([daemon]) => {
        const mapper = new Processor(new Describer('> '), [daemon!.address]);
        try {
          expect(await mapper.map([21, 'x', '4'])).to.deep.equal(['> number 42', '> not a number: x', '> number 8']);
        } finally {
          await mapper.shutdown();
        }
        // The second coordinator finds the bundle in the daemon's cache: it is not sent again.
        const again = new Processor(new Describer('# '), [daemon!.address]);
        try {
          expect(await again.map([1])).to.deep.equal(['# number 2']);
        } finally {
          await again.shutdown();
        }
        expect(daemon!.logs.filter((l) => l.event === 'bundle-received')).to.have.length(1);
        expect(daemon!.logs.filter((l) => l.event === 'bundle-cached')).to.have.length(1);
      });
    } finally {
      cache.remove();
      home.remove();
    }
  });

  it('fails setup with a clear error naming an external module missing on the worker host', async () => {
    const cache = tempDir('mapscale-cache-');
    // A package only the app's host has: beside the app's module, in a directory the daemon cannot see.
    const pkg = join(APP_DIR, 'node_modules', 'mapscale-test-local-only');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'mapscale-test-local-only', type: 'module', main: 'index.js' }));
    writeFileSync(join(pkg, 'index.js'), 'export const nothing = 0;\n');
    const { NeedsMissing } = await import('./fixtures/bundled/needs-missing.js');
    try {
      await withDaemons(1, { workers: 1, hide: [APP_DIR], args: ['--cache-dir', cache.path] }, async ([daemon]) => {
        const mapper = new Processor(new NeedsMissing(), [daemon!.address]);
        try {
          const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
          expect(error).to.be.instanceOf(SetupError);
          const cause = (error as SetupError).cause as Error;
          expect(cause.message).to.include('mapscale-test-local-only').and.include(hostname());
        } finally {
          await mapper.shutdown();
        }
      });
    } finally {
      cache.remove();
      rmSync(join(APP_DIR, 'node_modules'), { recursive: true, force: true });
    }
  });

  it('leaves a package with a native addon out of the bundle: the worker runs the copy installed on its host', async () => {
    const home = tempDir('mapscale-daemon-home-');
    try {
      // The worker host's own install of the package, where bare imports left out of a bundle resolve
      // from the cache directory upwards.
      const installed = dirname(realpathSync(createRequire(import.meta.url).resolve('msgpackr-extract/package.json')));
      mkdirSync(join(home.path, 'node_modules'));
      symlinkSync(installed, join(home.path, 'node_modules', 'msgpackr-extract'));
      const cacheDir = join(home.path, 'cache');
      const { NativeProbe } = await import('./fixtures/bundled/native.js');
      await withDaemons(1, { workers: 1, hide: [APP_DIR], cwd: home.path, args: ['--cache-dir', cacheDir] }, async ([daemon]) => {
        const mapper = new Processor(new NativeProbe(), [daemon!.address]);
        try {
          expect(await mapper.map([1, 2])).to.deep.equal(['1:function:"hi"', '2:function:"hi"']);
        } finally {
          await mapper.shutdown();
        }
      });
      const [bundle] = readdirSync(cacheDir).filter((name) => name.endsWith('.mjs'));
      const source = readFileSync(join(cacheDir, bundle!), 'utf8');
      expect(source).to.match(/from\s*["']msgpackr-extract["']/);
      expect(source).not.to.include('node-gyp-build');
    } finally {
      home.remove();
    }
  });

  it('bounds the cache: the least recently used bundles are evicted', async () => {
    const { BundleCache } = await import('../packages/worker-server/dist/bundle-cache.js');
    const silent = { child: () => silent, info: () => {} } as unknown as ConstructorParameters<typeof BundleCache>[2];
    const { createHash } = await import('node:crypto');
    const { readdirSync } = await import('node:fs');
    const dir = tempDir('mapscale-cache-');
    try {
      const cache = new BundleCache(dir.path, 2500, silent);
      const hashes: string[] = [];
      for (let i = 0; i < 4; i++) {
        const source = Buffer.alloc(1000, i);
        const hash = createHash('sha256').update(source).digest('hex');
        hashes.push(hash);
        await cache.put(hash, source);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(readdirSync(dir.path).sort()).to.deep.equal(hashes.slice(2).map((h) => `${h}.mjs`).sort());
      expect(await cache.has(hashes[0]!)).to.equal(false);
      const error = await cache.put(hashes[3]!, Buffer.alloc(1000, 9)).then(() => null, (e: unknown) => e);
      expect((error as { code: string }).code).to.equal('MS_PROTOCOL');
    } finally {
      dir.remove();
    }
  });
});
