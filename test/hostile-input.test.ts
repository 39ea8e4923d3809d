import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { Processor } from 'mapscale';
import { MAPSCALE_VERSION, PROTOCOL_VERSION, createNonce, encodeFrame, frameHeader, type ErrorMessage } from '@mapscale/protocol';
import { Power } from './fixtures/work-functions.js';
import { withDaemons, type TestDaemon } from './helpers/daemon.js';
import { rawConnect } from './helpers/raw-client.js';

async function stillServes(daemon: TestDaemon): Promise<void> {
  const mapper = new Processor(new Power(2), [daemon.address]);
  try {
    expect(await mapper.map([1, 2, 3])).to.deep.equal([1, 4, 9]);
  } finally {
    await mapper.shutdown();
  }
}

function errorCode(messages: { type: string }[]): string | undefined {
  return (messages.find((m) => m.type === 'error') as ErrorMessage | undefined)?.code;
}

describe('a daemon under hostile input', () => {
  it('answers garbage bytes with an error frame, closes that connection, and keeps serving', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      const client = await rawConnect(daemon!.port);
      client.send(Buffer.concat([frameHeader(64), randomBytes(64)]));
      await client.closed();
      expect(errorCode(client.received)).to.equal('MS_PROTOCOL');
      await stillServes(daemon!);
    });
  });

  it('refuses an oversized length prefix without buffering it, and keeps serving', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      const client = await rawConnect(daemon!.port);
      client.send(frameHeader(0xffff_fff0));
      client.send(randomBytes(1024));
      await client.closed();
      expect(errorCode(client.received)).to.equal('MS_FRAME_TOO_LARGE');
      await stillServes(daemon!);
    });
  });

  it('refuses any message before the handshake', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      const client = await rawConnect(daemon!.port);
      client.sendMessage({ type: 'jobs', slot: 0, batch: 1, payload: new Uint8Array([0x90]) });
      await client.closed();
      expect(errorCode(client.received)).to.equal('MS_PROTOCOL');
    });
  });

  it('refuses a peer speaking another protocol version, saying what differs', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      const client = await rawConnect(daemon!.port);
      client.sendMessage({ type: 'hello', protocol: PROTOCOL_VERSION + 1, mapscale: MAPSCALE_VERSION, node: process.versions.node, nonce: createNonce() });
      await client.closed();
      const refusal = client.received.find((m) => m.type === 'error') as ErrorMessage;
      expect(refusal.code).to.equal('MS_PROTOCOL_VERSION');
      expect(refusal.message).to.include(String(PROTOCOL_VERSION + 1));
    });
  });

  it('survives a burst of random byte streams and truncated frames on many connections', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      for (let i = 0; i < 40; i++) {
        const client = await rawConnect(daemon!.port);
        const body = randomBytes(1 + (i * 37) % 300);
        const bytes = i % 3 === 0 ? encodeFrame(body) : i % 3 === 1 ? randomBytes(1 + i * 11) : encodeFrame(body).subarray(0, 3 + i);
        client.send(bytes);
        client.socket.end();
        await client.closed();
      }
      await stillServes(daemon!);
    });
  });

  it('drops a connection that does not finish its handshake in time', async () => {
    await withDaemons(1, { args: ['--handshake-timeout-ms', '300'] }, async ([daemon]) => {
      const client = await rawConnect(daemon!.port);
      await client.closed(10_000);
      expect(errorCode(client.received)).to.equal('MS_HANDSHAKE_TIMEOUT');
      await stillServes(daemon!);
    });
  });
});
