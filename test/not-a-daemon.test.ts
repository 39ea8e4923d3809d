import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { ConnectError, NotADaemonError, Processor } from 'mapscale';
import { queryDaemonStatus } from '@mapscale/worker-server';
import { Power } from './fixtures/work-functions.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../node_modules/.bin/mapscale-worker', import.meta.url));

/** Something that is not a daemon, on a free loopback port, for the length of `body`. */
async function withStranger<T>(server: Server, body: (address: string) => Promise<T>): Promise<T> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    return await body(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
    server.close();
  }
}

/** A TCP server that greets every connection with `bytes` (and keeps it open, as a talking server does). */
function talker(bytes: Buffer): Server {
  return createServer((socket) => {
    socket.on('error', () => {});
    socket.write(bytes);
  });
}

async function firstMapError(address: string): Promise<unknown> {
  const mapper = new Processor(new Power(2), [address], { connectTimeoutMs: 5_000 });
  try {
    return await mapper.map([1]).then(() => null, (error: unknown) => error);
  } finally {
    await mapper.shutdown({ force: true }).catch(() => {});
  }
}

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('connecting to something that is not a MapScale daemon', () => {
  it('an HTTP server: the map fails with NotADaemonError naming the address and quoting its answer', async () => {
    await withStranger(createHttpServer((_, response) => response.end('hello')), async (address) => {
      const error = await firstMapError(address) as NotADaemonError;
      expect(error).to.be.instanceOf(NotADaemonError);
      expect(error.code).to.equal('MS_NOT_A_DAEMON');
      expect(error.address).to.equal(address);
      expect(error.received).to.equal('"HTTP/1.1 400 Bad Request"');
    });
  });

  it('a server that speaks first (an SSH banner), and one that sends bytes that are no message', async () => {
    await withStranger(talker(Buffer.from('SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n')), async (address) => {
      const error = await firstMapError(address) as NotADaemonError;
      expect(error).to.be.instanceOf(NotADaemonError);
      expect(error.received).to.equal('"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13"');
    });
    // A frame of 5 bytes that are not msgpack (0xc1 is never used).
    await withStranger(talker(Buffer.from([0, 0, 0, 5, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1])), async (address) => {
      const error = await firstMapError(address) as NotADaemonError;
      expect(error).to.be.instanceOf(NotADaemonError);
      expect(error.received).to.equal('"\\x00\\x00\\x00\\x05\\xc1\\xc1\\xc1\\xc1\\xc1"');
    });
  });

  it('mapscale-worker status says the same, in one line, exit 1', async () => {
    await withStranger(createHttpServer((_, response) => response.end('hello')), async (address) => {
      const [host, port] = address.split(':');
      const error = await queryDaemonStatus({ host: host!, port: Number(port), timeoutMs: 5_000 }).then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(NotADaemonError);
      const failed = await run(BIN, ['status', address], { timeout: 20_000 }).then(() => null, (e: { code?: number; stderr?: string }) => e);
      expect(failed?.code).to.equal(1);
      expect(failed!.stderr!.trim().split('\n')).to.have.length(1);
      expect(failed!.stderr).to.include('MS_NOT_A_DAEMON');
    });
  });

  it('a refused connection asks whether mapscale-worker runs there', async () => {
    const port = await deadPort();
    const error = await firstMapError(`127.0.0.1:${port}`) as ConnectError;
    expect(error).to.be.instanceOf(ConnectError);
    // The hint is the point here, so its text is what is checked.
    expect(error.message).to.include('is mapscale-worker running there?');
    const failed = await run(BIN, ['status', `127.0.0.1:${port}`], { timeout: 20_000 }).then(() => null, (e: { code?: number; stderr?: string }) => e);
    expect(failed?.code).to.equal(1);
    expect(failed!.stderr).to.include('MS_CONNECT_FAILED').and.include('is mapscale-worker running there?');
  });
});
