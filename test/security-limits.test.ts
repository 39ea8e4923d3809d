import { expect } from 'chai';
import { Processor, RemoteProtocolError } from 'mapscale';
import { MAPSCALE_VERSION, PROTOCOL_VERSION, createNonce, encodeFrame, encodeMessage, type ErrorMessage } from '@mapscale/protocol';
import { Power } from './fixtures/work-functions.js';
import { waitFor, withDaemons, type TestDaemon } from './helpers/daemon.js';
import { runDaemonToExit } from './helpers/daemon-exit.js';
import { rawConnect, type RawClient } from './helpers/raw-client.js';

const helloFrame = () => encodeFrame(encodeMessage({
  type: 'hello', protocol: PROTOCOL_VERSION, mapscale: MAPSCALE_VERSION, node: process.versions.node, nonce: createNonce(),
}));

function errorCode(client: RawClient): string | undefined {
  return (client.received.find((m) => m.type === 'error') as ErrorMessage | undefined)?.code;
}

async function mapsFine(daemon: TestDaemon): Promise<void> {
  const mapper = new Processor(new Power(2), [daemon.address]);
  try {
    expect(await mapper.map([1, 2, 3])).to.deep.equal([1, 4, 9]);
  } finally {
    await mapper.shutdown();
  }
}

/** Whether a new connection is kept open (not refused) for a moment. */
async function accepted(daemon: TestDaemon): Promise<boolean> {
  const probe = await rawConnect(daemon.port);
  const closed = await probe.closed(300).then(() => true, () => false);
  probe.socket.destroy();
  return !closed && errorCode(probe) === undefined;
}

/** Open Processors (set up and idle) count as authenticated connections. */
async function openProcessor(daemon: TestDaemon): Promise<Processor<number, number>> {
  const mapper = new Processor(new Power(2), [daemon.address]);
  expect(await mapper.map([2])).to.deep.equal([4]);
  return mapper;
}

describe('security: slowloris and connection caps', () => {
  describe('slowloris', () => {
    it('drops a client trickling its hello a byte at a time: the deadline is not reset by data', async () => {
      await withDaemons(1, { args: ['--handshake-timeout-ms', '400'] }, async ([daemon]) => {
        const client = await rawConnect(daemon!.port);
        const bytes = helloFrame();
        const started = Date.now();
        let sent = 0;
        const trickle = setInterval(() => {
          if (sent < bytes.length && !client.socket.destroyed) client.send(bytes.subarray(sent, ++sent));
        }, 50);
        try {
          await client.closed(10_000);
        } finally {
          clearInterval(trickle);
        }
        expect(errorCode(client)).to.equal('MS_HANDSHAKE_TIMEOUT');
        expect(Date.now() - started).to.be.below(5_000);
        await mapsFine(daemon!);
      });
    });

    it('drops a client that says hello and never proves anything', async () => {
      await withDaemons(1, { secret: 'slow', args: ['--handshake-timeout-ms', '300'] }, async ([daemon]) => {
        const client = await rawConnect(daemon!.port);
        client.send(helloFrame());
        await client.closed(10_000);
        expect(client.received.map((m) => m.type)).to.deep.equal(['welcome', 'error']);
        expect(errorCode(client)).to.equal('MS_HANDSHAKE_TIMEOUT');
      });
    });

    it('with every handshake slot held by stalled clients, refuses more at once, and serves again once they are dropped', async () => {
      await withDaemons(1, { args: ['--handshake-timeout-ms', '600', '--max-unauthenticated', '4'] }, async ([daemon]) => {
        const stalled = await Promise.all(Array.from({ length: 4 }, () => rawConnect(daemon!.port)));
        const extra = await rawConnect(daemon!.port);
        await extra.closed(5_000);
        expect(errorCode(extra)).to.equal('MS_TOO_MANY_CONNECTIONS');
        await Promise.all(stalled.map((client) => client.closed(10_000)));
        expect(stalled.map(errorCode)).to.deep.equal(Array(4).fill('MS_HANDSHAKE_TIMEOUT'));
        // The daemon frees a slot when its side of the socket closes, which may come a moment after
        // the client saw it close: it logs each such close once the slot is free.
        await waitFor(() => daemon!.logs.filter((l) => l.event === 'disconnected' && l.code === 'MS_HANDSHAKE_TIMEOUT').length === 4,
          5_000, 'the daemon to release the stalled connections');
        await mapsFine(daemon!);
      });
    });
  });

  describe('caps', () => {
    it('refuses a connection over --max-unauthenticated at once with MS_TOO_MANY_CONNECTIONS, others held stay open', async () => {
      await withDaemons(1, { args: ['--max-unauthenticated', '3', '--max-connections', '10'] }, async ([daemon]) => {
        const held = await Promise.all(Array.from({ length: 3 }, () => rawConnect(daemon!.port)));
        try {
          const refused = await rawConnect(daemon!.port);
          const started = Date.now();
          await refused.closed(5_000);
          expect(Date.now() - started).to.be.below(2_000);
          const refusal = refused.received.find((m) => m.type === 'error') as ErrorMessage;
          expect(refusal.code).to.equal('MS_TOO_MANY_CONNECTIONS');
          expect(refusal.message).to.include('3');
          expect(held.every((client) => !client.socket.destroyed)).to.equal(true);
          // A coordinator is refused the same way, and told why.
          const mapper = new Processor(new Power(2), [daemon!.address], { connectTimeoutMs: 5_000 });
          const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
          await mapper.shutdown();
          expect(error).to.be.instanceOf(RemoteProtocolError);
          expect((error as RemoteProtocolError).remoteCode).to.equal('MS_TOO_MANY_CONNECTIONS');
        } finally {
          for (const client of held) client.socket.destroy();
        }
        // The slots free up as soon as those connections close.
        await waitFor(() => accepted(daemon!), 5_000, 'held connections to be released');
        await mapsFine(daemon!);
      });
    });

    it('does not count authenticated coordinators against --max-unauthenticated', async () => {
      await withDaemons(1, { workers: 1, args: ['--max-unauthenticated', '1', '--max-connections', '8'] }, async ([daemon]) => {
        const mappers: Processor<number, number>[] = [];
        try {
          for (let i = 0; i < 3; i++) mappers.push(await openProcessor(daemon!));
          expect(mappers).to.have.length(3);
        } finally {
          await Promise.all(mappers.map((m) => m.shutdown()));
        }
      });
    });

    it('refuses a connection over --max-connections, however far the others got, until one closes', async () => {
      await withDaemons(1, { workers: 1, args: ['--max-connections', '2', '--max-unauthenticated', '2'] }, async ([daemon]) => {
        const first = await openProcessor(daemon!);
        const second = await openProcessor(daemon!);
        try {
          const refused = await rawConnect(daemon!.port);
          await refused.closed(5_000);
          expect(errorCode(refused)).to.equal('MS_TOO_MANY_CONNECTIONS');
          expect(await first.map([3])).to.deep.equal([9]);
        } finally {
          await first.shutdown();
        }
        await waitFor(() => accepted(daemon!), 5_000, 'a connection slot to free up');
        await second.shutdown();
        await mapsFine(daemon!);
        expect(daemon!.logs.filter((l) => l.event === 'connection-refused').length).to.be.at.least(1);
      });
    });

    it('refuses nonsensical caps at start-up', async () => {
      for (const args of [['--max-connections', '0'], ['--max-unauthenticated', '9', '--max-connections', '4']]) {
        const exit = await runDaemonToExit(['--port', '0', ...args]);
        expect(exit.code, args.join(' ')).to.equal(1);
      }
    });
  });
});
