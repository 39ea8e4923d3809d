import { expect } from 'chai';
import { AuthenticationError, Processor } from 'mapscale';
import { createNonce, localVersions } from '@mapscale/protocol';
import { Power } from './fixtures/work-functions.js';
import { waitFor, withDaemons, type TestDaemon } from './helpers/daemon.js';
import { rawConnect } from './helpers/raw-client.js';

async function firstMapError(address: string, secret: string | undefined): Promise<AuthenticationError> {
  const mapper = new Processor(new Power(2), [address], { secret, connectTimeoutMs: 5_000 });
  try {
    return await mapper.map([1]).then(() => { throw new Error('the map succeeded'); }, (error: AuthenticationError) => error);
  } finally {
    await mapper.shutdown({ force: true }).catch(() => {});
  }
}

/** The daemon's `auth-failed` lines, once there are `count`. */
async function authFailures(daemon: TestDaemon, count = 1): Promise<Record<string, unknown>[]> {
  const lines = () => daemon.logs.filter((l) => l.event === 'auth-failed');
  await waitFor(() => lines().length >= count, 10_000, `${count} auth-failed log line(s)`);
  return lines();
}

describe('a failed authentication says what is wrong, on both sides', () => {
  it('secrets that differ: the app is told they do not match, the daemon logs it with the peer\'s address', async () => {
    await withDaemons(1, { secret: 'the daemon\'s secret' }, async ([daemon]) => {
      const error = await firstMapError(daemon!.address, 'another secret');
      expect(error).to.be.instanceOf(AuthenticationError);
      expect(error.reason).to.equal('secrets-differ');
      const [logged] = await authFailures(daemon!);
      expect(logged).to.include({ reason: 'refused-by-coordinator', refusal: 'secrets-differ' });
      expect(logged!.peer).to.match(/^127\.0\.0\.1:\d+$/);
    });
  });

  it('no secret on the app\'s side: it is told to set one, the daemon logs it', async () => {
    await withDaemons(1, { secret: 'the daemon\'s secret' }, async ([daemon]) => {
      const error = await firstMapError(daemon!.address, undefined);
      expect(error.reason).to.equal('no-secret');
      const [logged] = await authFailures(daemon!);
      expect(logged).to.include({ reason: 'refused-by-coordinator', refusal: 'no-secret' });
    });
  });

  it('a daemon that checks no secret, for an app that has one: not the daemon expected', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      const error = await firstMapError(daemon!.address, 'a secret');
      expect(error.reason).to.equal('daemon-has-no-secret');
      const [logged] = await authFailures(daemon!);
      expect(logged).to.include({ refusal: 'daemon-has-no-secret' });
    });
  });

  it('a client whose proof is wrong is refused and logged (wrong-secret), each time, with its address', async () => {
    await withDaemons(1, { secret: 'the daemon\'s secret' }, async ([daemon]) => {
      const peers: string[] = [];
      for (let i = 0; i < 2; i++) {
        const client = await rawConnect(daemon!.port);
        peers.push(`127.0.0.1:${client.socket.localPort}`);
        client.sendMessage({ type: 'hello', ...localVersions(), nonce: createNonce() });
        await waitFor(() => client.received.length > 0, 5_000, 'the welcome');
        client.sendMessage({ type: 'auth', proof: new Uint8Array(32) });
        await client.closed(5_000);
      }
      const logged = await authFailures(daemon!, 2);
      expect(logged.map((l) => [l.reason, l.peer])).to.deep.equal(peers.map((peer) => ['wrong-secret', peer]));
    });
  });
});
