/**
 * Issue 3 lets local workers use a faster transport than TCP "if measurement says it pays". This is
 * that measurement: between this process and a child, the same two things over loopback TCP and
 * over a Unix domain socket: a small-message round trip (what latency is made of) and bulk
 * throughput (what W3 is made of).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnNode, stopChild } from './children.js';

const CHILD_PATH = new URL('./transport-child.js', import.meta.url).pathname;
const ROUND_TRIPS = 20_000;
const WARM_UP = 5_000;
const BULK_MIB = 400;

export type TransportKind = 'tcp' | 'unix';
export interface TransportFigures {
  roundTripMs: number;
  mibPerSecond: number;
}

async function listen(kind: TransportKind, dir: string, onSocket: (socket: Socket) => void): Promise<{ server: Server; where: string }> {
  const server = createServer({ noDelay: true }, onSocket);
  const path = join(dir, `transport-${process.pid}.sock`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (kind === 'tcp') server.listen(0, '127.0.0.1', resolve);
    else server.listen(path, resolve);
  });
  return { server, where: kind === 'tcp' ? String((server.address() as { port: number }).port) : path };
}

async function roundTrip(kind: TransportKind, dir: string): Promise<number> {
  let accept!: (socket: Socket) => void;
  const accepted = new Promise<Socket>((resolve) => (accept = resolve));
  const { server, where } = await listen(kind, dir, accept);
  const child = spawnNode([CHILD_PATH, 'echo', where]);
  try {
    const socket = await accepted;
    server.close();
    const message = Buffer.alloc(64, 1);
    const times: number[] = [];
    for (let i = 0; i < WARM_UP + ROUND_TRIPS; i++) {
      const started = performance.now();
      await new Promise<void>((resolve) => {
        socket.once('data', () => resolve());
        socket.write(message);
      });
      if (i >= WARM_UP) times.push(performance.now() - started);
    }
    socket.destroy();
    times.sort((a, b) => a - b);
    return times[times.length >> 1]!;
  } finally {
    server.close();
    await stopChild(child, 2_000);
  }
}

async function bulk(kind: TransportKind, dir: string): Promise<number> {
  let done!: (mibPerSecond: number) => void;
  const measured = new Promise<number>((resolve) => (done = resolve));
  const { server, where } = await listen(kind, dir, (socket) => {
    let bytes = 0;
    let started = 0;
    socket.on('data', (chunk) => {
      if (started === 0) started = performance.now();
      bytes += chunk.length;
    });
    socket.on('end', () => done(bytes / 2 ** 20 / ((performance.now() - started) / 1000)));
  });
  const child = spawnNode([CHILD_PATH, 'bulk', where, String(BULK_MIB)]);
  try {
    return await measured;
  } finally {
    server.close();
    await stopChild(child, 2_000);
  }
}

export async function measureTransport(kind: TransportKind): Promise<TransportFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'mapscale-transport-'));
  try {
    return { roundTripMs: await roundTrip(kind, dir), mibPerSecond: await bulk(kind, dir) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
