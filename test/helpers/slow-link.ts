import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP relay on loopback that holds every chunk for `delayMs` before passing it on, in order, in
 * both directions: a long-distance link between a coordinator and a daemon on this machine (the
 * kernel here has no netem). Real sockets on both sides; only the distance is made up.
 */
export interface SlowLink {
  /** "127.0.0.1:port": where the coordinator connects instead of the daemon. */
  readonly address: string;
  close(): Promise<void>;
}

export async function openSlowLink(target: { host: string; port: number }, delayMs: number): Promise<SlowLink> {
  const sockets = new Set<Socket>();
  const relay = (from: Socket, to: Socket) => {
    from.on('data', (chunk) => {
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
      }, delayMs);
    });
    from.on('end', () => setTimeout(() => to.end(), delayMs));
    from.on('error', () => to.destroy());
    from.on('close', () => setTimeout(() => to.destroy(), delayMs));
  };
  const server: Server = createServer((inbound) => {
    const outbound = connect(target);
    for (const socket of [inbound, outbound]) {
      socket.setNoDelay(true);
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    }
    relay(inbound, outbound);
    relay(outbound, inbound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}
