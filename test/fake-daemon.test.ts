import { createServer, type Server } from 'node:net';
import { expect } from 'chai';
import { Processor, ProtocolVersionError, ConnectError } from 'mapscale';
import { FrameDecoder, createNonce, decodeMessage, encodeFrame, encodeMessage, type Message } from '@mapscale/protocol';
import { Power } from './fixtures/work-functions.js';

/** A TCP server that answers a hello with the welcome given: a daemon of another release, say. */
async function fakeDaemon(welcome: (hello: Message) => Message | null): Promise<{ server: Server; address: string }> {
  const server = createServer((socket) => {
    const decoder = new FrameDecoder(1 << 20);
    socket.on('error', () => {});
    socket.on('data', (chunk) => decoder.push(chunk, (body) => {
      const reply = welcome(decodeMessage(body));
      if (reply) socket.write(encodeFrame(encodeMessage(reply)));
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
