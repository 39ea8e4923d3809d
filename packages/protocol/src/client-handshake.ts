import { AuthenticationError, ProtocolVersionError, type AuthRefusal } from './errors.js';
import { computeProof, createNonce, localVersions, nodeMismatch, verifyProof, versionMismatch } from './handshake.js';
import type { CoordinatorMessage, DaemonMessage, WelcomeMessage } from './messages.js';

export interface ClientHandshakeIo {
  /** Should write at once: after a refusal, the caller may close the connection right away. */
  send(message: CoordinatorMessage): void;
  /** The next daemon message that `accept` takes (others are the caller's business). */
  receive(accept: (message: DaemonMessage) => boolean): Promise<DaemonMessage>;
  /** Told when the daemon runs another Node.js major: shipped code may behave differently there. */
  warn?(detail: string): void;
}

/** How the caller's user gives a secret, for messages: a coordinator's option, or a CLI's flag. */
export const PROCESSOR_SECRET_HINT = 'set the "secret" option (or env MAPSCALE_SECRET)';

/**
 * The client's half of the handshake: hello → welcome (check versions and the daemon's proof) →
 * auth → ready. The daemon proves it holds the secret first, so a client with a secret never
 * talks on to a daemon without it: it sends `auth{refused}` (no proof) instead, so the daemon
 * logs the failure, and throws. Pure: the caller carries the messages.
 */
export async function clientHandshake(
  io: ClientHandshakeIo, secret: string | undefined, daemon: string, secretHint = PROCESSOR_SECRET_HINT,
): Promise<WelcomeMessage> {
  const nonce = createNonce();
  const local = localVersions();
  io.send({ type: 'hello', ...local, nonce });
  const welcome = (await io.receive((m) => m.type === 'welcome')) as WelcomeMessage;
  const mismatch = versionMismatch(local, welcome);
  if (mismatch) throw new ProtocolVersionError(`daemon ${daemon}: ${mismatch}`);
  const nodeDiff = nodeMismatch(local, welcome);
  if (nodeDiff) io.warn?.(nodeDiff);
  const refusal = refuseWelcome(welcome, secret, nonce);
  if (refusal) {
    io.send({ type: 'auth', refused: refusal });
    throw new AuthenticationError(REFUSALS[refusal](daemon, secretHint), { reason: refusal });
  }
  io.send({ type: 'auth', proof: secret === undefined ? undefined : computeProof(secret, 'coordinator', nonce, welcome.nonce) });
  await io.receive((m) => m.type === 'ready');
  return welcome;
}

/** A refusal as this release names them: what a daemon checks an `auth{refused}` against before logging it. */
export function isAuthRefusal(value: unknown): value is AuthRefusal {
  return typeof value === 'string' && Object.hasOwn(REFUSALS, value);
}

/** Whether this side must stop at the daemon's welcome, and why. */
function refuseWelcome(welcome: WelcomeMessage, secret: string | undefined, nonce: Uint8Array): AuthRefusal | null {
  if (secret === undefined) return welcome.authRequired ? 'no-secret' : null;
  if (!welcome.authRequired) return 'daemon-has-no-secret';
  return verifyProof(computeProof(secret, 'daemon', nonce, welcome.nonce), welcome.proof) ? null : 'secrets-differ';
}

const REFUSALS: Record<AuthRefusal, (daemon: string, secretHint: string) => string> = {
  'no-secret': (daemon, hint) => `daemon ${daemon} requires a secret: ${hint}`,
  'secrets-differ': (daemon) => `the secret does not match daemon ${daemon}'s: give both sides the same secret, ` +
    'or check that this is the daemon you meant (nothing was sent to it)',
  'daemon-has-no-secret': (daemon) => `daemon ${daemon} checks no secret (it was started without one), so it is not the daemon ` +
    'this secret is for: give it the secret too (--secret-file), or check the address (nothing was sent to it)',
};
