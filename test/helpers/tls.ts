import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './files.js';

/** A certificate and its key: PEM text, and the files they were written to (for the daemon's flags). */
export interface TestIdentity {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

/**
 * A throwaway PKI made at run time with the openssl CLI, in a temporary directory: no key is ever
 * committed. `ca` signs `daemon` (for 127.0.0.1 and localhost) and `client`; `otherCa` is a CA
 * nobody trusts, with a daemon and a client certificate of its own.
 */
export interface TestPki {
  dir: string;
  ca: TestIdentity;
  daemon: TestIdentity;
  client: TestIdentity;
  otherCa: TestIdentity;
  otherDaemon: TestIdentity;
  otherClient: TestIdentity;
  remove(): void;
}

const OPENSSL_TIMEOUT_MS = 20_000;

/** Fails (never skips) when openssl is missing: the TLS tests are part of the suite. */
function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: OPENSSL_TIMEOUT_MS });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') {
      throw new Error('the TLS tests need the openssl CLI on PATH (it makes a throwaway CA at run time); install openssl');
    }
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.toString() ?? e.message}`);
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function identity(dir: string, name: string): TestIdentity {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile };
}

function makeCa(dir: string, name: string): TestIdentity {
  openssl(['req', '-x509', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2',
    '-subj', `/CN=MapScale test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return identity(dir, name);
}

function makeLeaf(dir: string, name: string, ca: string, extensions: string[]): TestIdentity {
  writeFileSync(join(dir, `${name}.ext`), ['basicConstraints=CA:FALSE', ...extensions].join('\n') + '\n');
  openssl(['req', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=MapScale test ${name}`], dir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`,
    '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-out', `${name}.crt`, '-extfile', `${name}.ext`], dir);
  return identity(dir, name);
}

const DAEMON_EXTENSIONS = ['subjectAltName=IP:127.0.0.1,DNS:localhost', 'extendedKeyUsage=serverAuth'];
const CLIENT_EXTENSIONS = ['extendedKeyUsage=clientAuth'];

export function makeTestPki(): TestPki {
  const dir = tempDir('mapscale-pki-');
  try {
    const ca = makeCa(dir.path, 'ca');
    const otherCa = makeCa(dir.path, 'other-ca');
    return {
      dir: dir.path,
      ca,
      daemon: makeLeaf(dir.path, 'daemon', 'ca', DAEMON_EXTENSIONS),
      client: makeLeaf(dir.path, 'client', 'ca', CLIENT_EXTENSIONS),
      otherCa,
      otherDaemon: makeLeaf(dir.path, 'other-daemon', 'other-ca', DAEMON_EXTENSIONS),
      otherClient: makeLeaf(dir.path, 'other-client', 'other-ca', CLIENT_EXTENSIONS),
      remove: dir.remove,
    };
  } catch (error) {
    dir.remove();
    throw error;
  }
}
