import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { DashboardListenError } from '../errors.js';
import { dashboardAssets, type Asset } from './assets.js';
import type { ResolvedDashboardOptions } from './options.js';
import type { DashboardTick, SnapshotBuilder } from './snapshot.js';

export interface DashboardAddress {
  host: string;
  port: number;
  url: string;
}

/** How often the page is sent news: often enough to look live, rarely enough that a busy map does not notice. */
export const TICK_MS = 400;
/** Pages served at once; each costs one JSON write per tick. */
const MAX_CLIENTS = 32;

// The page loads only from this server, and the browser holds it to that.
const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; connect-src 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/**
 * The dashboard's HTTP side: the page's files, and `/events`, a server-sent event stream that gets
 * one tick every TICK_MS (the first with what is kept of the past). A page that reads slower than
 * ticks come skips ticks rather than queueing them. Everything is unref'd: an open page never keeps
 * an idle app alive.
 */
export class DashboardServer {
  readonly #options: ResolvedDashboardOptions;
  readonly #builder: SnapshotBuilder;
  readonly #log: Logger;
  readonly #server: Server;
  readonly #clients = new Set<ServerResponse>();
  #timer: NodeJS.Timeout | null = null;
  #allowedHosts: Set<string> | null = null;

  constructor(options: ResolvedDashboardOptions, builder: SnapshotBuilder, log: Logger) {
    this.#options = options;
    this.#builder = builder;
    this.#log = log;
    this.#server = createServer((request, response) => this.#serve(request, response));
    this.#server.on('connection', (socket) => socket.unref());
  }

  /** Resolves once listening; rejects with DashboardListenError (port taken, address not ours). */
  listen(): Promise<DashboardAddress> {
    return new Promise((resolve, reject) => {
      // A file missing from the package rejects here, as this promise, not as a throw from the constructor.
      const assets = dashboardAssets();
      const { host, port } = this.#options;
      this.#server.once('error', (error: NodeJS.ErrnoException) => reject(new DashboardListenError(host, port, error)));
      this.#server.listen(port, host, () => {
        this.#server.unref();
        const bound = (this.#server.address() as { port: number }).port;
        const shown = isIP(host) === 6 ? `[${host}]` : host;
        this.#allowedHosts = loopback(host) ? new Set([`${shown}:${bound}`, `localhost:${bound}`, `127.0.0.1:${bound}`, `[::1]:${bound}`]) : null;
        this.#timer = setInterval(() => this.#broadcast(this.#builder.tick()), TICK_MS).unref();
        this.#log.info({ event: 'dashboard-listening', host, port: bound, files: assets.size });
        resolve({ host, port: bound, url: `http://${shown}:${bound}/` });
      });
    });
  }

  /** Sends the last tick (so a page sees the end), ends every stream, stops listening. */
  async close(): Promise<void> {
    if (this.#timer) {
      clearInterval(this.#timer);
      this.#timer = null;
      this.#broadcast(this.#builder.tick());
    }
    for (const client of this.#clients) client.end();
    this.#clients.clear();
    if (!this.#server.listening) return;
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  #serve(request: IncomingMessage, response: ServerResponse): void {
    // A loopback page answers only to its own names: a web page elsewhere cannot reach it by
    // pointing a name of its own at 127.0.0.1 (DNS rebinding).
    if (this.#allowedHosts && !this.#allowedHosts.has(request.headers.host ?? '')) return void send(response, 421, 'wrong Host');
    if (request.method !== 'GET' && request.method !== 'HEAD') return void send(response, 405, 'GET only');
    const path = (request.url ?? '/').split('?')[0]!;
    if (path === '/events') return this.#stream(response);
    if (path === '/snapshot') return void send(response, 200, JSON.stringify(this.#builder.reset()), 'application/json');
    const asset: Asset | undefined = dashboardAssets().get(path);
    if (!asset) return void send(response, 404, 'not found');
    response.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.type, 'Content-Length': asset.body.length, 'Cache-Control': 'no-cache' });
    response.end(request.method === 'HEAD' ? undefined : asset.body);
  }

  #stream(response: ServerResponse): void {
    if (this.#clients.size >= MAX_CLIENTS) return void send(response, 503, `at most ${MAX_CLIENTS} pages at once`);
    response.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    response.write(`retry: 1000\n\n`);
    write(response, this.#builder.reset());
    this.#clients.add(response);
    response.on('close', () => this.#clients.delete(response));
  }

  #broadcast(tick: DashboardTick): void {
    if (this.#clients.size === 0) return;
    const frame = `data: ${JSON.stringify(tick)}\n\n`;
    for (const client of this.#clients) {
      // Still busy with an earlier tick: this one is skipped, its news lost to this page only.
      if (client.writableNeedDrain) continue;
      client.write(frame);
    }
  }
}

function write(response: ServerResponse, tick: DashboardTick): void {
  response.write(`data: ${JSON.stringify(tick)}\n\n`);
}

function send(response: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  response.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Cache-Control': 'no-store' });
  response.end(body);
}

function loopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
