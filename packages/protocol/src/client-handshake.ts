import { AuthenticationError, ProtocolVersionError } from './errors.js';
import { computeProof, createNonce, localVersions, nodeMismatch, verifyProof, versionMismatch } from './handshake.js';
import type { CoordinatorMessage, DaemonMessage, WelcomeMessage } from './messages.js';

export interface ClientHandshakeIo {
  send(message: CoordinatorMessage): void;
  /** The next daemon message that `accept` takes (others are the caller's business). */
  receive(accept: (message: DaemonMessage) => boolean): Promise<DaemonMessage>;
  /** Told when the daemon runs another Node.js major: shipped code may behave differently there. */
  warn?(detail: string): void;
}

/**
 * The client's half of the handshake: hello → welcome (check versions and the daemon's proof) →
 * auth → ready. The daemon proves it holds the secret first, so a client with a secret never
 * talks on to a daemon without it. Pure: the caller carries the messages.
 */
export async function clientHandshake(io: ClientHandshakeIo, secret: string | undefined, daemon: string): Promise<WelcomeMessage> {
  const nonce = createNonce();
  const local = localVersions();
  io.send({ type: 'hello', ...local, nonce });
  const welcome = (await io.receive((m) => m.type === 'welcome')) as WelcomeMessage;
  const mismatch = versionMismatch(local, welcome);
  if (mismatch) throw new ProtocolVersionError(`daemon ${daemon}: ${mismatch}`);
  const nodeDiff = nodeMismatch(local, welcome);
  if (nodeDiff) io.warn?.(nodeDiff);
  if (welcome.authRequired && secret === undefined) {
    throw new AuthenticationError(`daemon ${daemon} requires a secret: set MAPSCALE_SECRET or the "secret" option`);
  }
  if (secret !== undefined) {
    if (!welcome.authRequired || !verifyProof(computeProof(secret, 'daemon', nonce, welcome.nonce), welcome.proof)) {
      throw new AuthenticationError(`daemon ${daemon} did not prove it holds the secret; refusing to send it work`);
    }
  }
  io.send({ type: 'auth', proof: secret === undefined ? undefined : computeProof(secret, 'coordinator', nonce, welcome.nonce) });
  await io.receive((m) => m.type === 'ready');
  return welcome;
}
