import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ProtocolError } from '@mapscale/protocol';
import { BundleStoreError } from './errors.js';

const HASH = /^[0-9a-f]{64}$/;

/** `.<hash>.<pid>.<random>.tmp`: a bundle being written by process `pid`, renamed into place once whole. */
const TEMPORARY = /^\.[0-9a-f]{64}\.(\d+)\.[0-9a-f]+\.tmp$/;

/**
 * A temporary file this old is a leftover whoever wrote it: a write takes well under a second, and a
 * crashed writer on another host (or in another pid namespace) sharing the directory cannot be asked.
 */
export const STALE_TEMPORARY_MS = 10 * 60_000;

/** The disk (or the user's quota) is full: evicting bundles can make room. */
const DISK_FULL: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT']);

interface CachedBundle {
  name: string;
  bytes: number;
  used: number;
}

/**
 * Work-function bundles on disk, named by the SHA-256 of their bytes, so a coordinator sends a
 * bundle only to daemons that lack it. Bounded in bytes, bundles and temporary files together: the
 * least recently used bundles go first, to make room before a write and when the disk is full.
 * A failed write leaves nothing behind (a partial file on a full disk would fail every later write
 * too), and temporary files of writers that died are removed.
 * Bare imports a bundle leaves external resolve from this directory upwards, so the default
 * (inside the daemon's working directory) finds the packages installed there.
 */
export class BundleCache {
  readonly dir: string;
  readonly #maxBytes: number;
  readonly #log: Logger;
  #ready: Promise<void> | null = null;

  constructor(dir: string, maxBytes: number, log: Logger) {
    this.dir = dir;
    this.#maxBytes = maxBytes;
    this.#log = log.child({ component: 'bundle-cache' });
  }

  path(hash: string): string {
    if (!HASH.test(hash)) throw new ProtocolError('bundle hash is not a SHA-256 hex digest');
    return join(this.dir, `${hash}.mjs`);
  }

  /** Whether the bundle is here; marks it used. */
  async has(hash: string): Promise<boolean> {
    const file = this.path(hash);
    try {
      const now = new Date();
      await utimes(file, now, now);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Stores a bundle after checking its bytes against its name, evicting the least recently used
   * bundles to keep within the bound and, when the disk is full, to make room; throws
   * BundleStoreError when it still cannot.
   */
  async put(hash: string, source: Uint8Array): Promise<string> {
    const file = this.path(hash);
    const actual = createHash('sha256').update(source).digest('hex');
    if (actual !== hash) throw new ProtocolError(`bundle bytes do not match their hash (${actual.slice(0, 12)}… ≠ ${hash.slice(0, 12)}…)`);
    if (source.length > this.#maxBytes) {
      throw new BundleStoreError(`a bundle of ${source.length} bytes is over the cache bound of ${this.#maxBytes} bytes (--cache-max-bytes)`);
    }
    this.#ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 }).then(() => {});
    try {
      await this.#ready;
      await this.#evict(hash, source.length, 'bound');
      try {
        await this.#write(hash, source, file);
      } catch (error) {
        if (!DISK_FULL.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
        // The disk filled before the cache bound did: room is made from the least recently used bundles.
        if ((await this.#evict(hash, source.length, 'disk')) === 0) throw error;
        await this.#write(hash, source, file);
      }
    } catch (error) {
      if (error instanceof BundleStoreError) throw error;
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      const full = DISK_FULL.has(reason) ? ' (the disk is full, even after evicting the least recently used bundles): free space there, or give --cache-dir on a larger disk' : '';
      throw new BundleStoreError(`cannot store a bundle of ${source.length} bytes in ${this.dir}: ${reason}${full}`, { cause: error });
    }
    this.#log.info({ event: 'bundle-stored', hash, bytes: source.length });
    return file;
  }

  /** Write then rename: a reader never sees half a bundle, even with two sessions storing it at once. */
  async #write(hash: string, source: Uint8Array, file: string): Promise<void> {
    const temporary = join(this.dir, `.${hash}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await writeFile(temporary, source, { mode: 0o600 });
      await rename(temporary, file);
    } catch (error) {
      await unlink(temporary).catch(() => {});
      throw error;
    }
  }

  /**
   * Evicts least recently used bundles (never `keep`) so that `bytes` more fit: within the bound
   * (`bound`: bundles and live temporary files count), or, on a full disk (`disk`), until that many
   * bytes were freed. Removes stale temporary files on the way. Resolves to the bytes freed.
   */
  async #evict(keep: string, bytes: number, goal: 'bound' | 'disk'): Promise<number> {
    const { bundles, temporaryBytes } = await this.#scan();
    let total = temporaryBytes + bundles.reduce((sum, b) => sum + b.bytes, 0);
    let freed = 0;
    for (const bundle of bundles) {
      if (goal === 'bound' ? total + bytes <= this.#maxBytes : freed >= bytes) break;
      if (bundle.name === `${keep}.mjs`) continue;
      await unlink(join(this.dir, bundle.name)).catch(() => {});
      total -= bundle.bytes;
      freed += bundle.bytes;
      this.#log.info({ event: 'bundle-evicted', file: bundle.name, bytes: bundle.bytes, reason: goal === 'bound' ? 'cache-bound' : 'disk-full' });
    }
    return freed;
  }

  /** The bundles here, least recently used first, and the bytes of temporary files still being written; stale ones are removed. */
  async #scan(): Promise<{ bundles: CachedBundle[]; temporaryBytes: number }> {
    const now = Date.now();
    const bundles: CachedBundle[] = [];
    let temporaryBytes = 0;
    await Promise.all((await readdir(this.dir)).map(async (name) => {
      const temporary = TEMPORARY.exec(name);
      if (!temporary && !name.endsWith('.mjs')) return;
      const info = await stat(join(this.dir, name)).catch(() => null);
      if (!info) return;
      if (!temporary) {
        bundles.push({ name, bytes: info.size, used: info.mtimeMs });
        return;
      }
      const writerGone = !processRuns(Number(temporary[1]));
      if (writerGone || now - info.mtimeMs > STALE_TEMPORARY_MS) {
        await unlink(join(this.dir, name)).catch(() => {});
        this.#log.info({ event: 'bundle-temporary-removed', file: name, bytes: info.size, reason: writerGone ? 'writer-gone' : 'stale' });
      } else {
        temporaryBytes += info.size;
      }
    }));
    bundles.sort((a, b) => a.used - b.used);
    return { bundles, temporaryBytes };
  }
}

/** Whether process `pid` runs on this host (EPERM: it does, as another user). */
function processRuns(pid: number): boolean {
  // 0 and negative pids name process groups, and no pid is past int32: a name this cache did not write.
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid > 0x7fffffff) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
