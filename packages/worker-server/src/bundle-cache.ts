import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ProtocolError } from '@mapscale/protocol';

const HASH = /^[0-9a-f]{64}$/;

/**
 * Work-function bundles on disk, named by the SHA-256 of their bytes, so a coordinator sends a
 * bundle only to daemons that lack it. Bounded in bytes: the least recently used go first.
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

  /** Stores a bundle after checking its bytes against its name; evicts old ones past the bound. */
  async put(hash: string, source: Uint8Array): Promise<string> {
    const file = this.path(hash);
    const actual = createHash('sha256').update(source).digest('hex');
    if (actual !== hash) throw new ProtocolError(`bundle bytes do not match their hash (${actual.slice(0, 12)}… ≠ ${hash.slice(0, 12)}…)`);
    if (source.length > this.#maxBytes) throw new ProtocolError(`bundle of ${source.length} bytes is over the cache bound of ${this.#maxBytes} bytes`);
    this.#ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 }).then(() => {});
    await this.#ready;
    // Write then rename: a reader never sees half a bundle, even with two sessions storing it at once.
    const temporary = join(this.dir, `.${hash}.${randomBytes(6).toString('hex')}.tmp`);
    await writeFile(temporary, source, { mode: 0o600 });
    await rename(temporary, file);
    this.#log.info({ event: 'bundle-stored', hash, bytes: source.length });
    await this.#evict(hash);
    return file;
  }

  async #evict(keep: string): Promise<void> {
    const entries = await Promise.all((await readdir(this.dir)).filter((n) => n.endsWith('.mjs')).map(async (name) => {
      const info = await stat(join(this.dir, name)).catch(() => null);
      return info ? { name, bytes: info.size, used: info.mtimeMs } : null;
    }));
    const files = entries.filter((e): e is NonNullable<typeof e> => e !== null).sort((a, b) => a.used - b.used);
    let total = files.reduce((sum, f) => sum + f.bytes, 0);
    for (const file of files) {
      if (total <= this.#maxBytes) break;
      if (file.name === `${keep}.mjs`) continue;
      await unlink(join(this.dir, file.name)).catch(() => {});
      total -= file.bytes;
      this.#log.info({ event: 'bundle-evicted', file: file.name, bytes: file.bytes });
    }
  }
}
