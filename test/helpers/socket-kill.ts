import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Resets both ends of every loopback TCP connection with `port` at one end, from outside the
 * processes, as a middlebox dropping the connection would (`ss -K`: the kernel's SOCK_DESTROY).
 */
export async function killConnections(port: number | string): Promise<void> {
  await run('ss', ['-K', `( sport = :${port} or dport = :${port} )`], { timeout: 10_000 });
}

/** Whether `ss -K` works here (iproute2 installed, a kernel with SOCK_DESTROY, the rights to use it). */
export async function canKillConnections(): Promise<boolean> {
  const server = createServer((socket) => socket.on('error', () => {}));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  client.on('error', () => {});
  try {
    await once(client, 'connect');
    // Not events.once: the reset comes as an 'error' first, which would reject it.
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    await killConnections((server.address() as AddressInfo).port);
    return await Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000).unref())]);
  } catch {
    return false;
  } finally {
    client.destroy();
    server.close();
  }
}
