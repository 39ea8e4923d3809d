import { connect, type Socket } from 'node:net';
import { Packr, Unpackr } from 'msgpackr';
import { spawnNode, stopChild, type ChildHandle } from '../children.js';
import { FrameReader, FrameWriter } from '../raw-frames.js';
import type { Mapper, WorkloadSpec } from '../workloads.js';

const CHILD_PATH = new URL('../raw-child.js', import.meta.url).pathname;
/** Frames in flight per child: one being computed, the next already in its socket buffer. */
const FRAMES_IN_FLIGHT = 2;
const START_TIMEOUT_MS = 20_000;

interface RawConnection {
  socket: Socket;
  writer: FrameWriter;
  /** Start index of each frame sent and not yet answered; a child answers in order. */
  pending: number[];
  onResults: ((values: unknown[]) => void) | null;
  onClose: ((error: Error) => void) | null;
}

/**
 * The raw-transport bound: 2 child processes, each serving one loopback TCP connection; the parent
 * streams length-prefixed msgpackr frames of `spec.rawFrameJobs` jobs, pipelined, each next frame
 * going to whichever child answered. No envelope, no scheduler, no handshake.
 */
export function openRaw(spec: WorkloadSpec, processes = 2, thread: 'thread' | 'thread-socket' | null = null): Mapper {
  const packr = new Packr({ moreTypes: true });
  const unpackr = new Unpackr({ moreTypes: true });
  const children: ChildHandle[] = [];
  for (let i = 0; i < processes; i++) children.push(spawnNode([CHILD_PATH, spec.compute, String(spec.setupMs), ...(thread ? [thread] : [])]));
  const connections: RawConnection[] = [];
  const ready = Promise.all(children.map(async (child) => {
    const { port } = await child.waitForEvent('listening', START_TIMEOUT_MS + spec.setupMs);
    connections.push(await open(port as number, unpackr));
  }));
  ready.catch(() => {});

  return {
    async map(jobs) {
      await ready;
      const total = jobs.length;
      const results = new Array<unknown>(total);
      if (total === 0) return results;
      const frameJobs = spec.rawFrameJobs;
      let next = 0;
      let done = 0;
      return new Promise<unknown[]>((resolve, reject) => {
        const sendNext = (conn: RawConnection): void => {
          if (next >= total) return;
          const start = next;
          next = Math.min(total, start + frameJobs);
          conn.pending.push(start);
          conn.writer.write(packr.pack(jobs.slice(start, next)));
        };
        for (const conn of connections) {
          conn.onClose = reject;
          conn.onResults = (values) => {
            const start = conn.pending.shift()!;
            for (let i = 0; i < values.length; i++) results[start + i] = values[i];
            done += values.length;
            if (done === total) {
              for (const c of connections) c.onResults = c.onClose = null;
              resolve(results);
            } else {
              sendNext(conn);
            }
          };
        }
        for (let depth = 0; depth < FRAMES_IN_FLIGHT; depth++) for (const conn of connections) sendNext(conn);
      });
    },
    async close() {
      await ready.catch(() => {});
      for (const conn of connections) conn.socket.end();
      await Promise.all(children.map((child) => stopChild(child, 2_000)));
    },
  };
}

function open(port: number, unpackr: Unpackr): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    const conn: RawConnection = { socket, writer: new FrameWriter(socket), pending: [], onResults: null, onClose: null };
    const reader = new FrameReader();
    socket.once('connect', () => resolve(conn));
    socket.on('error', reject);
    socket.on('data', (chunk) => reader.push(chunk, (body) => conn.onResults?.(unpackr.unpack(body) as unknown[])));
    socket.on('close', () => conn.onClose?.(new Error(`raw child on port ${port} closed the connection`)));
  });
}
