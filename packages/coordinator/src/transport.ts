import { connect as netConnect } from 'node:net';
import { ConnectError } from '@mapscale/protocol';
import { FramedConnection } from '@mapscale/worker-server';
import { InvalidOptionError } from './errors.js';

export interface DaemonAddress {
  host: string;
  port: number;
  /** As the user wrote it, for messages. */
  label: string;
}

/** Parses "host:port" or "[v6]:port". */
export function parseAddress(address: string): DaemonAddress {
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(String(address).trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port < 1 || port > 65535) {
    throw new InvalidOptionError(`worker address ${JSON.stringify(address)} is not "host:port"`);
  }
  return { host: (match[1] ?? match[2])!, port, label: address };
}

/**
 * The one place the coordinator sees a socket: opens it, within a deadline, and hands back a
 * framed message stream. Failures become ConnectError naming the address.
 */
export function openConnection(address: DaemonAddress, timeoutMs: number, maxFrameBytes: number): Promise<FramedConnection> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: address.host, port: address.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectError(`could not connect to ${address.label} within ${timeoutMs} ms`));
    }, timeoutMs).unref();
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(new ConnectError(`could not connect to ${address.label}: ${error.message}`, { cause: error }));
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(new FramedConnection(socket, maxFrameBytes));
    });
  });
}
