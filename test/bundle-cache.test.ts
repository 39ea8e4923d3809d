import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Processor, RemoteProtocolError, type WorkFunction } from 'mapscale';
import { Describer } from './fixtures/bundled/work.js';
import { withDaemons, type TestDaemon } from './helpers/daemon.js';
import { tempDir } from './helpers/files.js';

const isRoot = process.getuid?.() === 0;
const GENERATED = fileURLToPath(new URL('./fixtures/generated/', import.meta.url));

/** A module (next to the fixtures, so it resolves `mapscale`) whose bundled class carries `bytes` of padding. */
async function paddedClass(bytes: number): Promise<WorkFunction<number, number>> {
  mkdirSync(GENERATED, { recursive: true });
  const file = join(GENERATED, `padded-${randomBytes(6).toString('hex')}.js`);
  // Base64 of random bytes: a bundle that is as large on disk as it says.
  writeFileSync(file, `import { WorkFunction } from 'mapscale';
const PADDING = ${JSON.stringify(randomBytes(Math.ceil(bytes * 0.75)).toString('base64'))};
export class Padded extends WorkFunction {
  static module = import.meta.url;
  call(x) { return x + PADDING.length; }
}
`);
  const { Padded } = await import(file) as { Padded: new () => WorkFunction<number, number> };
  return new Padded();
}

/** The cache directory as the daemon sees it: inside its mount namespace, where the small disk is. */
function cacheSeenByDaemon(daemon: TestDaemon, cacheDir: string): string[] {
  return execFileSync('nsenter', ['--target', String(daemon.child.pid), '--mount', '--', 'ls', '-A', cacheDir]).toString().split('\n').filter(Boolean);
}

async function mapOnce(work: WorkFunction<number, number>, address: string): Promise<number[]> {
  const mapper = new Processor(work, [address], { connectTimeoutMs: 5_000 });
  try {
    return await mapper.map([1]);
  } finally {
    await mapper.shutdown({ force: true }).catch(() => {});
  }
}

describe('the bundle cache', () => {
  after(() => rmSync(GENERATED, { recursive: true, force: true }));

  describe('on a disk that fills up', function () {
    before(function () {
      if (!isRoot || spawnSync('nsenter', ['--version']).status !== 0) {
        console.warn('      skipped: a small disk of its own (a tmpfs in a mount namespace) needs root and nsenter; CI runs as root');
        this.skip();
      }
    });

    it('fails a bundle larger than the free space with a clear error, leaves nothing behind, and a small bundle still fits', async () => {
      const disk = tempDir('mapscale-small-disk-');
      const cacheDir = join(disk.path, 'cache');
      try {
        await withDaemons(1, { workers: 1, smallDisk: { dir: disk.path, bytes: 1024 * 1024 }, args: ['--cache-dir', cacheDir] }, async ([daemon]) => {
          const error = await mapOnce(await paddedClass(2 * 1024 * 1024), daemon!.address).then(() => null, (e: unknown) => e) as
            { code?: string; remoteCode?: string; message: string } | null;
          expect(error, 'the map of a bundle that cannot fit').to.not.equal(null);
          // The daemon's refusal, with its code: the disk is full, not the coordinator at fault.
          expect(error).to.be.instanceOf(RemoteProtocolError);
          expect(error!.remoteCode).to.equal('MS_BUNDLE_STORE_FAILED');
          expect(error!.message).to.include('ENOSPC');
          expect(cacheSeenByDaemon(daemon!, cacheDir), 'a failed write leaves no partial file').to.deep.equal([]);
          expect(await mapOnce(new Describer('> ') as unknown as WorkFunction<number, number>, daemon!.address)).to.deep.equal(['> number 2']);
          expect(cacheSeenByDaemon(daemon!, cacheDir)).to.have.length(1);
        });
      } finally {
        disk.remove();
      }
    });

    it('evicts the least recently used bundles to make room when the disk is full, before refusing', async () => {
      const disk = tempDir('mapscale-small-disk-');
      const cacheDir = join(disk.path, 'cache');
      try {
        // The cache bound (256 MiB by default) is far off: it is the disk that runs out.
        await withDaemons(1, { workers: 1, smallDisk: { dir: disk.path, bytes: 1024 * 1024 }, args: ['--cache-dir', cacheDir] }, async ([daemon]) => {
          const first = await paddedClass(600 * 1024);
          const second = await paddedClass(600 * 1024);
          expect(await mapOnce(first, daemon!.address)).to.have.length(1);
          const [firstBundle] = cacheSeenByDaemon(daemon!, cacheDir);
          expect(await mapOnce(second, daemon!.address)).to.have.length(1);
          const now = cacheSeenByDaemon(daemon!, cacheDir);
          expect(now).to.have.length(1);
          expect(now[0]).to.not.equal(firstBundle);
          expect(daemon!.logs.some((l) => l.event === 'bundle-evicted' && l.reason === 'disk-full')).to.equal(true);
        });
      } finally {
        disk.remove();
      }
    });
  });

  it('counts temporary files against its bound and removes those whose writer is gone or that are stale', async () => {
    const { BundleCache } = await import('../packages/worker-server/dist/bundle-cache.js');
    const silent = { child: () => silent, info: () => {} } as unknown as ConstructorParameters<typeof BundleCache>[2];
    const dir = tempDir('mapscale-cache-');
    const bundle = (fill: number) => {
      const source = Buffer.alloc(1000, fill);
      return { source, hash: createHash('sha256').update(source).digest('hex') };
    };
    try {
      const cache = new BundleCache(dir.path, 3500, silent);
      const old = bundle(1);
      await cache.put(old.hash, old.source);
      const minuteAgo = new Date(Date.now() - 60_000);
      utimesSync(join(dir.path, `${old.hash}.mjs`), minuteAgo, minuteAgo);
      // A process that has exited: its pid runs no more.
      const deadPid = spawnSync(process.execPath, ['-e', '']).pid!;
      const fakeHash = 'a'.repeat(64);
      const deadWriter = `.${fakeHash}.${deadPid}.0001.tmp`;
      const staleWriter = `.${fakeHash}.${process.pid}.0002.tmp`;
      const liveWriter = `.${fakeHash}.${process.pid}.0003.tmp`;
      for (const name of [deadWriter, staleWriter, liveWriter]) writeFileSync(join(dir.path, name), Buffer.alloc(1000));
      // A day old: whoever wrote it is long gone, whatever the pid says.
      const longAgo = new Date(Date.now() - 24 * 3600_000);
      utimesSync(join(dir.path, staleWriter), longAgo, longAgo);
      // 1000 (old) + 1000 (the live temporary file) + 1000 (new) fits 3500 only once the leftovers are gone;
      // with the next one it takes evicting the old bundle, since the live temporary file counts.
      const fresh = bundle(2);
      await cache.put(fresh.hash, fresh.source);
      expect(readdirSync(dir.path).sort()).to.deep.equal([liveWriter, `${fresh.hash}.mjs`, `${old.hash}.mjs`].sort());
      const newest = bundle(3);
      await cache.put(newest.hash, newest.source);
      expect(readdirSync(dir.path).sort()).to.deep.equal([liveWriter, `${fresh.hash}.mjs`, `${newest.hash}.mjs`].sort());
    } finally {
      dir.remove();
    }
  });
});
