import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';

const START_DEADLINE_MS = 10_000;
const LIFETIME_MS = 60_000;

/**
 * An address on loopback where a TCP connect never completes, as with a host whose link is down:
 * a process listens there with a backlog of 1 and then blocks (it never accepts), the backlog already
 * filled by two connections this side holds, so the kernel drops every further SYN and the connect
 * just waits. The process ends itself after LIFETIME_MS even if nobody closes it.
 */
export interface BlackHole {
  /** "127.0.0.1:port". */
  readonly address: string;
  close(): void;
}

export async function openBlackHole(): Promise<BlackHole> {
  const child: ChildProcess = spawn(process.execPath, ['-e', `
    const server = require('node:net').createServer();
    server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      require('node:fs').writeSync(1, server.address().port + '\\n');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${LIFETIME_MS});
      process.exit(0);
    });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  let timer: NodeJS.Timeout | undefined;
  const port = await Promise.race([
    new Promise<number>((resolve) => child.stdout!.once('data', (data) => resolve(Number(String(data).trim())))),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('black hole did not start')), START_DEADLINE_MS))),
  ]).finally(() => clearTimeout(timer));
  const fillers: Socket[] = [];
  for (let i = 0; i < 2; i++) {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('connect', resolve));
    fillers.push(socket);
  }
  return {
    address: `127.0.0.1:${port}`,
    close() {
      for (const socket of fillers) socket.destroy();
      child.kill('SIGKILL');
    },
  };
}
