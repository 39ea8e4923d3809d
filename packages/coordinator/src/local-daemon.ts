import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { MapScaleError } from '@mapscale/protocol';
import { localDaemonEntry } from '@mapscale/worker-server/runtime';

/** A local daemon could not be started. */
export class LocalDaemonError extends MapScaleError {
  static override readonly code = 'MS_LOCAL_DAEMON_FAILED';
}

const STOP_GRACE_MS = 10_000;

/** The local workers of `new Processor(fn, N)`: a daemon on loopback the pool starts and stops. */
export interface LocalWorkers {
  readonly secret: string;
  /** The process its instances run in. */
  readonly pid: number | undefined;
  /** "127.0.0.1:port" once it listens; rejects with LocalDaemonError if it cannot start. */
  readonly address: Promise<string>;
  stop(): Promise<void>;
}

/**
 * A worker daemon child process the coordinator owns: started on loopback with a free port and a
 * one-off secret, stopped at shutdown. It also exits by itself if this process dies (its stdin closes),
 * so a crashed app leaves no daemon behind.
 */
export class LocalDaemon implements LocalWorkers {
  readonly secret: string;
  #child: ChildProcess;
  #log: Logger;
  #exited: Promise<number | null>;
  #address: Promise<string>;

  /** `maxFrameBytes`: the largest frame it accepts, the Processor's maxFrameBytes (nobody gives a local daemon flags). */
  constructor(workers: number, secret: string, logger: Logger, startTimeoutMs: number, maxFrameBytes?: number) {
    this.secret = secret;
    this.#log = logger.child({ component: 'local-daemon' });
    this.#child = spawn(process.execPath, [fileURLToPath(localDaemonEntry()), String(workers), ...(maxFrameBytes === undefined ? [] : [String(maxFrameBytes)])], { env: { ...process.env, MAPSCALE_SECRET: secret }, stdio: ['pipe', 'pipe', 'inherit'] });
    this.#exited = new Promise((resolve) => this.#child.once('exit', (code) => resolve(code)));
    this.#address = this.#readAddress(startTimeoutMs);
    // Neither the child nor its pipes keep the app alive; shutdown() still stops it.
    this.#child.unref();
    for (const stream of [this.#child.stdin, this.#child.stdout]) (stream as unknown as { unref?: () => void })?.unref?.();
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** "127.0.0.1:port" once the daemon logs that it listens. */
  get address(): Promise<string> {
    return this.#address;
  }

  #readAddress(timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const lines = createInterface({ input: this.#child.stdout! });
      const timer = setTimeout(() => {
        reject(new LocalDaemonError(`local worker daemon did not start within ${timeoutMs} ms`));
        this.#child.kill('SIGKILL');
      }, timeoutMs).unref();
      this.#child.once('error', (error) => {
        clearTimeout(timer);
        reject(new LocalDaemonError(`cannot start local worker daemon: ${error.message}`, { cause: error }));
      });
      void this.#exited.then((code) => {
        clearTimeout(timer);
        reject(new LocalDaemonError(`local worker daemon exited with code ${code} before listening`));
      });
      lines.on('line', (line) => {
        let entry: { event?: string; port?: number; level?: number };
        try {
          entry = JSON.parse(line);
        } catch {
          return;
        }
        if (entry.event === 'listening' && typeof entry.port === 'number') {
          clearTimeout(timer);
          resolve(`127.0.0.1:${entry.port}`);
        } else {
          // What goes wrong in a local daemon reaches the caller as typed errors; its log is detail.
          this.#log.debug({ event: 'daemon-log', pid: this.pid, entry });
        }
      });
    });
  }

  /** SIGTERM (the daemon runs cleanup of anything left), then SIGKILL if it overstays. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), STOP_GRACE_MS);
    await this.#exited;
    clearTimeout(timer);
  }
}
