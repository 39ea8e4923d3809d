import { createServer, type Server } from 'node:net';
import { expect } from 'chai';
import { Processor, ProtocolVersionError, ConnectError, ConnectionClosedError } from 'mapscale';
import { FrameDecoder, createNonce, decodeMessage, encodeFrame, encodeMessage, type Message } from '@mapscale/protocol';
import { Greeter } from './fixtures/module-scoped.js';
import { Power } from './fixtures/work-functions.js';

/** A TCP server that answers a hello with the welcome given: a daemon of another release, say. */
async function fakeDaemon(welcome: (hello: Message) => Message | null, closeAfterReply = false): Promise<{ server: Server; address: string }> {
  const server = createServer((socket) => {
    const decoder = new FrameDecoder(1 << 20);
    socket.on('error', () => {});
    socket.on('data', (chunk) => decoder.push(chunk, (body) => {
      const reply = welcome(decodeMessage(body));
      if (reply) socket.write(encodeFrame(encodeMessage(reply)));
      if (reply && closeAfterReply && reply.type === 'ready') socket.end();
    }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, address: `127.0.0.1:${port}` };
}

describe('the coordinator facing an incompatible or silent daemon', () => {
  it('refuses a daemon of another protocol version with ProtocolVersionError naming it', async () => {
    const { server, address } = await fakeDaemon((hello) => hello.type !== 'hello' ? null : {
      type: 'welcome', protocol: 99, mapscale: '9.0.0', node: process.versions.node, nonce: createNonce(),
      authRequired: false, slots: 1, hostname: 'fake', pid: 1,
    });
    try {
      const mapper = new Processor(new Power(2), [address]);
      const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(ProtocolVersionError);
      expect((error as ProtocolVersionError).code).to.equal('MS_PROTOCOL_VERSION');
      expect((error as Error).message).to.include(address).and.include('99');
      await mapper.shutdown();
    } finally {
      server.close();
    }
  });

  it('gives up on a daemon that accepts but never answers, within connectTimeoutMs', async () => {
    const { server, address } = await fakeDaemon(() => null);
    try {
      const mapper = new Processor(new Power(2), [address], { connectTimeoutMs: 300 });
      const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(ConnectError);
      await mapper.shutdown();
    } finally {
      server.close();
    }
  });

  it('fails the first map with ConnectionClosedError when the daemon closes while the work function is still being bundled', async () => {
    // Bundling runs beside the handshake; a close that lands before setup is sent must not leave setup waiting forever.
    const { server, address } = await fakeDaemon((message) => {
      if (message.type === 'hello') {
        return {
          type: 'welcome', protocol: message.protocol, mapscale: message.mapscale, node: process.versions.node, nonce: createNonce(),
          authRequired: false, slots: 1, hostname: 'fake', pid: 1,
        };
      }
      return message.type === 'auth' ? { type: 'ready' } : null;
    }, true);
    try {
      const mapper = new Processor(new Greeter('hi'), [address]);
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise((resolve) => (timer = setTimeout(() => resolve('still waiting after 10 s'), 10_000)));
      const outcome = await Promise.race([mapper.map(['x']).then(() => 'resolved', (e: unknown) => e), hung]);
      clearTimeout(timer);
      expect(outcome).to.be.instanceOf(ConnectionClosedError);
      expect((outcome as Error).message).to.include(address);
      await mapper.shutdown({ force: true });
    } finally {
      server.close();
    }
  });

  it('reports an address where nothing listens as ConnectError', async () => {
    const { server, address } = await fakeDaemon(() => null);
    await new Promise((resolve) => server.close(resolve));
    const mapper = new Processor(new Power(2), [address]);
    const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
    expect(error).to.be.instanceOf(ConnectError);
    expect((error as ConnectError).code).to.equal('MS_CONNECT_FAILED');
    await mapper.shutdown();
  });
});
