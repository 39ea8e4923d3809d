import { InvalidOptionError } from '@mapscale/protocol';

/** Where a daemon listens. */
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
