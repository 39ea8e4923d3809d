import { connect, createServer, type Server } from 'node:net';
import { expect } from 'chai';
import { AuthenticationError, Processor } from 'mapscale';
import {
  FrameDecoder, computeProof, createNonce, decodeMessage, encodeFrame, encodeMessage, localVersions,
  type ErrorMessage, type Message, type WelcomeMessage,
} from '@mapscale/protocol';
import { Power } from './fixtures/work-functions.js';
import { waitFor, withDaemons, type TestDaemon } from './helpers/daemon.js';
import { rawConnect, type RawClient } from './helpers/raw-client.js';

const secret = 'replay tests secret';

/** Splits a recorded byte stream into its frames (header and body, as sent). */
function frames(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  new FrameDecoder(1 << 30).push(bytes, (body) => out.push(encodeFrame(Buffer.from(body))));
  return out;
}

/**
 * A loopback TCP proxy in front of `port` that records every byte each side sent, as an attacker
 * on the path would.
 */
async function recordingProxy(port: number): Promise<{ address: string; server: Server; fromCoordinator: Buffer[]; fromDaemon: Buffer[] }> {
  const fromCoordinator: Buffer[] = [];
  const fromDaemon: Buffer[] = [];
  const server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port });
    client.on('data', (chunk) => fromCoordinator.push(Buffer.from(chunk)));
    upstream.on('data', (chunk) => fromDaemon.push(Buffer.from(chunk)));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, server, fromCoordinator, fromDaemon };
}

/** Records one real coordinator's session through the proxy: its hello and auth frames, and the daemon's welcome. */
async function recordHandshake(daemon: TestDaemon): Promise<{ hello: Buffer; auth: Buffer; welcome: WelcomeMessage }> {
  const proxy = await recordingProxy(daemon.port);
  try {
    const mapper = new Processor(new Power(2), [proxy.address], { secret });
    try {
      expect(await mapper.map([7])).to.deep.equal([49]);
    } finally {
      await mapper.shutdown();
    }
  } finally {
    proxy.server.close();
  }
  const [hello, auth] = frames(Buffer.concat(proxy.fromCoordinator));
  const [welcome] = frames(Buffer.concat(proxy.fromDaemon));
  expect(decodeMessage(hello!.subarray(4)).type).to.equal('hello');
  expect(decodeMessage(auth!.subarray(4)).type).to.equal('auth');
  return { hello: hello!, auth: auth!, welcome: decodeMessage(welcome!.subarray(4)) as WelcomeMessage };
}

function refusal(client: RawClient): ErrorMessage | undefined {
  return client.received.find((m) => m.type === 'error') as ErrorMessage | undefined;
}

/** What a rogue daemon got: the hello, and perhaps the coordinator's refusal (an auth without a proof), nothing else. */
function expectNoProof(received: Message[]): void {
  expect(received[0]?.type).to.equal('hello');
  for (const message of received.slice(1)) {
    expect(message.type).to.equal('auth');
    expect((message as Extract<Message, { type: 'auth' }>).proof).to.equal(undefined);
    expect((message as Extract<Message, { type: 'auth' }>).refused).to.be.a('string');
  }
  expect(received.length).to.be.at.most(2);
}

/** A TCP server speaking the daemon's side of the handshake as `welcome` says; records what it is sent. */
async function rogueDaemon(welcome: (hello: Message) => Message): Promise<{ address: string; server: Server; received: Message[] }> {
  const received: Message[] = [];
  const server = createServer((socket) => {
    const decoder = new FrameDecoder(1 << 20);
    socket.on('error', () => {});
    socket.on('data', (chunk) => decoder.push(chunk, (body) => {
      const message = decodeMessage(body);
      received.push(message);
      if (message.type === 'hello') socket.write(encodeFrame(encodeMessage(welcome(message))));
    }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, server, received };
}

describe('security: authentication and replay', () => {
  describe('a recorded handshake replayed to the daemon', () => {
    it('is refused: the daemon\'s fresh nonce makes the recorded proof worthless', async () => {
      await withDaemons(1, { secret }, async ([daemon]) => {
        const recorded = await recordHandshake(daemon!);
        const replay = await rawConnect(daemon!.port);
        replay.send(recorded.hello);
        await waitFor(() => replay.received.length > 0, 5_000, 'the welcome');
        const welcome = replay.received[0] as WelcomeMessage;
        expect(welcome.type).to.equal('welcome');
        expect(Buffer.from(welcome.nonce).equals(Buffer.from(recorded.welcome.nonce))).to.equal(false);
        replay.send(recorded.auth);
        await replay.closed(5_000);
        expect(refusal(replay)?.code).to.equal('MS_AUTH_FAILED');
        expect(replay.received.some((m) => m.type === 'ready')).to.equal(false);
      });
    });

    it('is refused when sent in one go, and the daemon keeps serving the real coordinator', async () => {
      await withDaemons(1, { secret }, async ([daemon]) => {
        const recorded = await recordHandshake(daemon!);
        for (let i = 0; i < 3; i++) {
          const replay = await rawConnect(daemon!.port);
          replay.send(Buffer.concat([recorded.hello, recorded.auth]));
          await replay.closed(5_000);
          expect(refusal(replay)?.code).to.equal('MS_AUTH_FAILED');
          expect(replay.received.some((m) => m.type === 'ready')).to.equal(false);
        }
        expect(daemon!.logs.filter((l) => l.event === 'session-authenticated')).to.have.length(1);
        const mapper = new Processor(new Power(3), [daemon!.address], { secret });
        try {
          expect(await mapper.map([2])).to.deep.equal([8]);
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('refuses the daemon\'s own proof reflected back as the coordinator\'s: proofs are labelled by role', async () => {
      await withDaemons(1, { secret }, async ([daemon]) => {
        const client = await rawConnect(daemon!.port);
        client.sendMessage({ type: 'hello', ...localVersions(), nonce: createNonce() });
        await waitFor(() => client.received.length > 0, 5_000, 'the welcome');
        const welcome = client.received[0] as WelcomeMessage;
        client.sendMessage({ type: 'auth', proof: welcome.proof });
        await client.closed(5_000);
        expect(refusal(client)?.code).to.equal('MS_AUTH_FAILED');
      });
    });
  });

  describe('a daemon that does not hold the secret (the coordinator\'s side)', () => {
    it('is refused when it replays a real daemon\'s welcome and proof: the coordinator\'s nonce is fresh', async () => {
      await withDaemons(1, { secret }, async ([daemon]) => {
        const recorded = await recordHandshake(daemon!);
        const rogue = await rogueDaemon(() => recorded.welcome);
        try {
          const mapper = new Processor(new Power(2), [rogue.address], { secret, connectTimeoutMs: 5_000 });
          const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
          await mapper.shutdown();
          expect(error).to.be.instanceOf(AuthenticationError);
          expect((error as Error).message).to.include(rogue.address);
          // It never got a proof to take elsewhere, let alone the work function or a job: at most the refusal.
          expectNoProof(rogue.received);
        } finally {
          rogue.server.close();
        }
      });
    });

    it('is refused when it claims to check a secret but proves it with a proof made from another secret', async () => {
      const rogue = await rogueDaemon((hello) => {
        const nonce = createNonce();
        return {
          type: 'welcome', ...localVersions(), nonce, authRequired: true, slots: 1, hostname: 'rogue', pid: 1,
          proof: computeProof('a guess', 'daemon', (hello as { nonce: Uint8Array }).nonce, nonce),
        };
      });
      try {
        const mapper = new Processor(new Power(2), [rogue.address], { secret, connectTimeoutMs: 5_000 });
        const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
        await mapper.shutdown();
        expect(error).to.be.instanceOf(AuthenticationError);
        expect((error as AuthenticationError).code).to.equal('MS_AUTH_FAILED');
        expectNoProof(rogue.received);
      } finally {
        rogue.server.close();
      }
    });
  });
});
