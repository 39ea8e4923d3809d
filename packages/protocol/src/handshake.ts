import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { MAPSCALE_VERSION, PROTOCOL_VERSION, releaseLine } from './version.js';

export const NONCE_BYTES = 32;

export function createNonce(): Uint8Array {
  return randomBytes(NONCE_BYTES);
}

/** Versions one side announces in its hello/welcome. */
export interface PeerVersions {
  protocol: number;
  mapscale: string;
  node: string;
}

export function localVersions(): PeerVersions {
  return { protocol: PROTOCOL_VERSION, mapscale: MAPSCALE_VERSION, node: process.versions.node };
}

/**
 * Why two peers cannot talk, or null when they can. Protocol versions must be equal and MapScale
 * release lines must match; a different Node.js major only warrants a warning (see nodeMismatch).
 */
export function versionMismatch(local: PeerVersions, remote: PeerVersions): string | null {
  if (local.protocol !== remote.protocol) {
    return `protocol version differs: this side speaks ${local.protocol}, the peer ${remote.protocol}; ` +
      `install the same MapScale release (this side ${local.mapscale}, peer ${remote.mapscale}) on both`;
  }
  if (releaseLine(local.mapscale) !== releaseLine(remote.mapscale)) {
    return `MapScale release differs: this side ${local.mapscale}, the peer ${remote.mapscale}; ` +
      `install the same ${releaseLine(local.mapscale)}.x release on both`;
  }
  return null;
}

/** Shipped source runs on the peer's Node.js: a different major may lack what the code uses. */
export function nodeMismatch(local: PeerVersions, remote: PeerVersions): string | null {
  const major = (v: string) => v.split('.')[0];
  return major(local.node) === major(remote.node)
    ? null
    : `Node.js differs: this side ${local.node}, the peer ${remote.node}`;
}

type ProofRole = 'daemon' | 'coordinator';

/**
 * HMAC-SHA256 over both nonces, labelled by role so a proof from one direction can never be
 * replayed as the other. The secret itself never crosses the wire.
 */
export function computeProof(secret: string | Uint8Array, role: ProofRole, coordinatorNonce: Uint8Array, daemonNonce: Uint8Array): Uint8Array {
  return createHmac('sha256', secret)
    .update(`mapscale-v${PROTOCOL_VERSION}-${role}`)
    .update(coordinatorNonce)
    .update(daemonNonce)
    .digest();
}

/** Constant-time check of a peer's proof. */
export function verifyProof(expected: Uint8Array, received: Uint8Array | undefined): boolean {
  return received instanceof Uint8Array && received.length === expected.length && timingSafeEqual(expected, received);
}
