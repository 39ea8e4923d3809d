import { expect } from 'chai';
import {
  MAPSCALE_VERSION,
  NONCE_BYTES,
  PROTOCOL_VERSION,
  computeProof,
  createNonce,
  decodeMessage,
  encodeMessage,
  localVersions,
  nodeMismatch,
  releaseLine,
  verifyProof,
  versionMismatch,
  type Message,
  type PeerVersions,
} from '@mapscale/protocol';

const SECRET = 'correct horse battery staple';

function versions(overrides: Partial<PeerVersions> = {}): PeerVersions {
  return { protocol: 1, mapscale: '0.1.0', node: '20.19.0', ...overrides };
}

describe('createNonce', () => {
  it(`returns ${NONCE_BYTES} random bytes, different each time`, () => {
    const a = createNonce();
    const b = createNonce();
    expect(a).to.be.instanceOf(Uint8Array);
    expect(a.length).to.equal(NONCE_BYTES);
    expect(b.length).to.equal(NONCE_BYTES);
    expect(Buffer.from(a).equals(Buffer.from(b))).to.equal(false);
  });
});

describe('computeProof and verifyProof', () => {
  const coordinatorNonce = createNonce();
  const daemonNonce = createNonce();

  it('verifies a proof made with the same secret, role and nonces', () => {
    const expected = computeProof(SECRET, 'coordinator', coordinatorNonce, daemonNonce);
    const received = computeProof(SECRET, 'coordinator', coordinatorNonce, daemonNonce);
    expect(verifyProof(expected, received)).to.equal(true);
  });

  it('is deterministic and 32 bytes long (HMAC-SHA256)', () => {
    const a = computeProof(SECRET, 'daemon', coordinatorNonce, daemonNonce);
    const b = computeProof(SECRET, 'daemon', coordinatorNonce, daemonNonce);
    expect(a.length).to.equal(32);
    expect(Buffer.from(a).equals(Buffer.from(b))).to.equal(true);
  });

  it('treats a string secret and its UTF-8 bytes as the same secret', () => {
    const fromString = computeProof('sécret', 'daemon', coordinatorNonce, daemonNonce);
    const fromBytes = computeProof(new Uint8Array(Buffer.from('sécret', 'utf8')), 'daemon', coordinatorNonce, daemonNonce);
    expect(verifyProof(fromString, fromBytes)).to.equal(true);
  });

  it('fails a proof made with a wrong secret', () => {
    const expected = computeProof(SECRET, 'coordinator', coordinatorNonce, daemonNonce);
    for (const wrong of ['wrong', SECRET + ' ', SECRET.toUpperCase(), '']) {
      expect(verifyProof(expected, computeProof(wrong, 'coordinator', coordinatorNonce, daemonNonce)), wrong).to.equal(false);
    }
  });

  it('fails a proof from one role replayed as the other', () => {
    const daemonProof = computeProof(SECRET, 'daemon', coordinatorNonce, daemonNonce);
    const coordinatorProof = computeProof(SECRET, 'coordinator', coordinatorNonce, daemonNonce);
    expect(verifyProof(coordinatorProof, daemonProof)).to.equal(false);
    expect(verifyProof(daemonProof, coordinatorProof)).to.equal(false);
  });

  it('fails a proof made over different nonces', () => {
    const expected = computeProof(SECRET, 'daemon', coordinatorNonce, daemonNonce);
    const otherNonce = createNonce();
    expect(verifyProof(expected, computeProof(SECRET, 'daemon', otherNonce, daemonNonce))).to.equal(false);
    expect(verifyProof(expected, computeProof(SECRET, 'daemon', coordinatorNonce, otherNonce))).to.equal(false);
  });

  it('fails a proof made with the two nonces swapped', () => {
    const expected = computeProof(SECRET, 'daemon', coordinatorNonce, daemonNonce);
    expect(verifyProof(expected, computeProof(SECRET, 'daemon', daemonNonce, coordinatorNonce))).to.equal(false);
  });

  it('fails a proof of the wrong length, including a matching prefix and an empty one', () => {
    const expected = computeProof(SECRET, 'coordinator', coordinatorNonce, daemonNonce);
    expect(verifyProof(expected, expected.subarray(0, expected.length - 1))).to.equal(false);
    expect(verifyProof(expected, new Uint8Array(0))).to.equal(false);
    expect(verifyProof(expected, Buffer.concat([expected, Buffer.from([0])]))).to.equal(false);
  });

  it('fails a proof that is undefined or not bytes', () => {
    const expected = computeProof(SECRET, 'coordinator', coordinatorNonce, daemonNonce);
    expect(verifyProof(expected, undefined)).to.equal(false);
    for (const notBytes of [null, 'proof', [...expected], { length: 32 }]) {
      expect(verifyProof(expected, notBytes as unknown as Uint8Array)).to.equal(false);
    }
  });

  it('fails a proof with a single flipped bit', () => {
    const expected = computeProof(SECRET, 'coordinator', coordinatorNonce, daemonNonce);
    const tampered = new Uint8Array(expected);
    tampered[17] ^= 0x01;
    expect(verifyProof(expected, tampered)).to.equal(false);
  });

  it('verifies a proof that travelled in an auth message', () => {
    const proof = computeProof(SECRET, 'coordinator', coordinatorNonce, daemonNonce);
    const message = decodeMessage(encodeMessage({ type: 'auth', proof })) as Extract<Message, { type: 'auth' }>;
    expect(verifyProof(computeProof(SECRET, 'coordinator', coordinatorNonce, daemonNonce), message.proof)).to.equal(true);
  });
});

describe('releaseLine', () => {
  it('is major.minor on 0.x and the major from 1.0 on', () => {
    expect(releaseLine('0.1.0')).to.equal('0.1');
    expect(releaseLine('0.1.7')).to.equal('0.1');
    expect(releaseLine('0.12.3')).to.equal('0.12');
    expect(releaseLine('1.2.3')).to.equal('1');
    expect(releaseLine('12.0.0')).to.equal('12');
  });
});

describe('versionMismatch', () => {
  it('is null for equal versions', () => {
    expect(versionMismatch(versions(), versions())).to.equal(null);
  });

  it('is null for this process against itself', () => {
    const local = localVersions();
    expect(local).to.deep.equal({ protocol: PROTOCOL_VERSION, mapscale: MAPSCALE_VERSION, node: process.versions.node });
    expect(versionMismatch(local, localVersions())).to.equal(null);
  });

  it('explains a protocol version that differs, in either direction', () => {
    expect(versionMismatch(versions({ protocol: 1 }), versions({ protocol: 2 }))).to.be.a('string').that.is.not.empty;
    expect(versionMismatch(versions({ protocol: 2 }), versions({ protocol: 1 }))).to.be.a('string').that.is.not.empty;
  });

  it('explains a protocol version that differs even when the MapScale versions match', () => {
    expect(versionMismatch(versions({ protocol: 1, mapscale: '0.1.0' }), versions({ protocol: 3, mapscale: '0.1.0' }))).to.be.a('string');
  });

  it('explains a MapScale minor that differs on 0.x', () => {
    expect(versionMismatch(versions({ mapscale: '0.1.0' }), versions({ mapscale: '0.2.0' }))).to.be.a('string').that.is.not.empty;
    expect(versionMismatch(versions({ mapscale: '0.10.0' }), versions({ mapscale: '0.1.0' }))).to.be.a('string').that.is.not.empty;
  });

  it('is null for a MapScale patch that differs on 0.x', () => {
    expect(versionMismatch(versions({ mapscale: '0.1.0' }), versions({ mapscale: '0.1.9' }))).to.equal(null);
  });

  it('is null for a MapScale minor that differs from 1.0 on, and a string for a major that differs', () => {
    expect(versionMismatch(versions({ mapscale: '1.2.0' }), versions({ mapscale: '1.5.3' }))).to.equal(null);
    expect(versionMismatch(versions({ mapscale: '1.2.0' }), versions({ mapscale: '2.0.0' }))).to.be.a('string');
    expect(versionMismatch(versions({ mapscale: '0.9.0' }), versions({ mapscale: '1.0.0' }))).to.be.a('string');
  });

  it('ignores a Node.js version that differs', () => {
    expect(versionMismatch(versions({ node: '20.19.0' }), versions({ node: '22.3.0' }))).to.equal(null);
  });
});

describe('nodeMismatch', () => {
  it('is null for the same Node.js major, whatever the minor and patch', () => {
    expect(nodeMismatch(versions({ node: '20.19.0' }), versions({ node: '20.19.0' }))).to.equal(null);
    expect(nodeMismatch(versions({ node: '20.19.0' }), versions({ node: '20.11.1' }))).to.equal(null);
  });

  it('explains a Node.js major that differs', () => {
    expect(nodeMismatch(versions({ node: '20.19.0' }), versions({ node: '22.1.0' }))).to.be.a('string').that.is.not.empty;
    expect(nodeMismatch(versions({ node: '22.1.0' }), versions({ node: '20.19.0' }))).to.be.a('string').that.is.not.empty;
  });

  it('is not fooled by majors sharing a leading digit', () => {
    expect(nodeMismatch(versions({ node: '2.0.0' }), versions({ node: '20.0.0' }))).to.be.a('string');
  });

  it('ignores protocol and MapScale versions', () => {
    expect(nodeMismatch(versions({ protocol: 1, mapscale: '0.1.0' }), versions({ protocol: 2, mapscale: '0.3.0' }))).to.equal(null);
  });
});
