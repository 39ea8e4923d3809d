import { connect } from 'node:net';
import { expect } from 'chai';
import { ConnectError, Processor, TLSError, type ProcessorOptions } from 'mapscale';
import { Power } from './fixtures/work-functions.js';
import { waitFor, withDaemons, type TestDaemon } from './helpers/daemon.js';
import { runDaemonToExit } from './helpers/daemon-exit.js';
import { makeTestPki, type TestPki } from './helpers/tls.js';

const secret = 'tls tests secret';

/** Maps three jobs and shuts down; resolves to what map threw, or null when it returned the squares. */
/** Maps through the daemon; with `direct`, also waits for every instance's data connection (over TLS too) and maps over them. */
async function tryMap(daemon: TestDaemon, options: ProcessorOptions, direct = false): Promise<unknown> {
  const mapper = new Processor(new Power(2), [daemon.address], { secret, connectTimeoutMs: 5_000, ...options });
  try {
    expect(await mapper.map([1, 2, 3])).to.deep.equal([1, 4, 9]);
    if (direct) {
      await waitFor(() => mapper.stats()[0]!.directSlots === mapper.workerCount, 10_000, 'every instance to attach its data connection');
      expect(await mapper.map([4, 5])).to.deep.equal([16, 25]);
    }
    return null;
  } catch (error) {
    return error;
  } finally {
    await mapper.shutdown().catch(() => {});
  }
}

function expectTlsError(error: unknown, daemon: TestDaemon): TLSError {
  expect(error).to.be.instanceOf(TLSError);
  const tlsError = error as TLSError;
  expect(tlsError.code).to.equal('MS_TLS');
  expect(tlsError.workerAddress).to.equal(daemon.address);
  expect(tlsError.message).to.include(daemon.address);
  return tlsError;
}

describe('security: TLS', function () {
  let pki: TestPki;

  before(function () {
    this.timeout(60_000);
    pki = makeTestPki();
  });

  after(() => pki?.remove());

  const tlsArgs = (mutual: boolean) => [
    '--tls-cert', pki.daemon.certFile, '--tls-key', pki.daemon.keyFile, ...(mutual ? ['--tls-ca', pki.ca.certFile] : []),
  ];

  describe('server certificate only', () => {
    it('serves a coordinator over TLS once it checked the daemon\'s certificate against tls.ca', async () => {
      await withDaemons(1, { secret, args: tlsArgs(false) }, async ([daemon]) => {
        const listening = daemon!.logs.find((l) => l.event === 'listening')!;
        expect(listening.tls).to.equal(true);
        expect(listening.clientCertificates).to.equal(false);
        expect(await tryMap(daemon!, { tls: { ca: pki.ca.cert } }, true)).to.equal(null);
      });
    });

    it('checks the name in the certificate: tls.servername must be one it carries', async () => {
      await withDaemons(1, { secret, args: tlsArgs(false) }, async ([daemon]) => {
        expect(await tryMap(daemon!, { tls: { ca: pki.ca.cert, servername: 'localhost' } })).to.equal(null);
        const error = expectTlsError(await tryMap(daemon!, { tls: { ca: pki.ca.cert, servername: 'not-the-daemon.example' } }), daemon!);
        expect((error.cause as { code?: string }).code).to.equal('ERR_TLS_CERT_ALTNAME_INVALID');
      });
    });

    it('refuses a daemon whose certificate no trusted CA signed, with TLSError naming it', async () => {
      await withDaemons(1, { secret, args: ['--tls-cert', pki.otherDaemon.certFile, '--tls-key', pki.otherDaemon.keyFile] }, async ([daemon]) => {
        expectTlsError(await tryMap(daemon!, { tls: { ca: pki.ca.cert } }), daemon!);
        // Without tls.ca only the public CAs are trusted: a private CA's certificate is refused too.
        expectTlsError(await tryMap(daemon!, { tls: {} }), daemon!);
        expect(daemon!.logs.some((l) => l.event === 'session-authenticated')).to.equal(false);
      });
    });

    it('reports a TLS coordinator meeting a plain daemon as TLSError', async () => {
      await withDaemons(1, { secret }, async ([daemon]) => {
        const error = expectTlsError(await tryMap(daemon!, { tls: { ca: pki.ca.cert } }), daemon!);
        expect(error.message).to.include('TLS');
      });
    });

    it('turns away a plain coordinator: no MapScale byte is read outside TLS, and the error says to set tls', async () => {
      await withDaemons(1, { secret, args: tlsArgs(false) }, async ([daemon]) => {
        const error = await tryMap(daemon!, {});
        expect(error).to.be.instanceOf(ConnectError);
        expect((error as Error).message).to.include(daemon!.address).and.include('"tls" option');
        expect(daemon!.logs.some((l) => l.event === 'session-authenticated')).to.equal(false);
      });
    });
  });

  describe('mutual TLS (--tls-ca)', () => {
    it('serves a coordinator presenting a client certificate signed by that CA', async () => {
      await withDaemons(1, { secret, args: tlsArgs(true) }, async ([daemon]) => {
        expect(daemon!.logs.find((l) => l.event === 'listening')!.clientCertificates).to.equal(true);
        expect(await tryMap(daemon!, { tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } }, true)).to.equal(null);
      });
    });

    it('refuses a coordinator without a client certificate, with TLSError naming the daemon', async () => {
      await withDaemons(1, { secret, args: tlsArgs(true) }, async ([daemon]) => {
        const error = expectTlsError(await tryMap(daemon!, { tls: { ca: pki.ca.cert } }), daemon!);
        expect(error.message).to.include('client certificate');
        await waitFor(() => daemon!.logs.some((l) => l.event === 'tls-failed'), 5_000, 'the daemon to log the failed TLS handshake');
        expect(daemon!.logs.some((l) => l.event === 'session-authenticated')).to.equal(false);
      });
    });

    it('refuses a client certificate signed by another CA, with TLSError', async () => {
      await withDaemons(1, { secret, args: tlsArgs(true) }, async ([daemon]) => {
        expectTlsError(await tryMap(daemon!, { tls: { ca: pki.ca.cert, cert: pki.otherClient.cert, key: pki.otherClient.key } }), daemon!);
        expect(daemon!.logs.some((l) => l.event === 'session-authenticated')).to.equal(false);
      });
    });

    it('still requires the secret on top of a valid client certificate', async () => {
      await withDaemons(1, { secret, args: tlsArgs(true) }, async ([daemon]) => {
        const error = await tryMap(daemon!, { secret: 'not the secret', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } });
        expect((error as { code?: string }).code).to.equal('MS_AUTH_FAILED');
      });
    });
  });

  describe('the daemon\'s handshake limits under TLS', () => {
    it('drops a connection that never starts its TLS handshake, within --handshake-timeout-ms', async () => {
      await withDaemons(1, { secret, args: [...tlsArgs(false), '--handshake-timeout-ms', '300'] }, async ([daemon]) => {
        const socket = connect({ host: '127.0.0.1', port: daemon!.port });
        socket.on('error', () => {});
        const started = Date.now();
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('the daemon kept a silent TLS connection open')), 10_000);
          socket.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
        });
        expect(Date.now() - started).to.be.below(5_000);
        expect(await tryMap(daemon!, { tls: { ca: pki.ca.cert } })).to.equal(null);
      });
    });

    it('counts TLS handshakes under way against --max-unauthenticated, refusing one more at once', async () => {
      await withDaemons(1, { secret, args: [...tlsArgs(false), '--max-unauthenticated', '1'] }, async ([daemon]) => {
        const idle = connect({ host: '127.0.0.1', port: daemon!.port });
        idle.on('error', () => {});
        try {
          await new Promise((resolve) => idle.once('connect', resolve));
          expectTlsError(await tryMap(daemon!, { tls: { ca: pki.ca.cert } }), daemon!);
          // The daemon's log line comes through its stdout, which may trail the refused socket.
          await waitFor(() => daemon!.logs.some((l) => l.event === 'connection-refused'), 5_000, 'the daemon to log the refusal');
        } finally {
          idle.destroy();
        }
      });
    });
  });

  describe('start-up', () => {
    it('refuses to start with --tls-cert but no --tls-key, or --tls-ca alone', async () => {
      for (const args of [['--tls-cert', pki.daemon.certFile], ['--tls-ca', pki.ca.certFile]]) {
        const exit = await runDaemonToExit(['--port', '0', ...args]);
        expect(exit.code, args.join(' ')).to.equal(1);
        const failure = exit.logs.find((l) => l.event === 'start-failed') as { err: { code: string } };
        expect(failure.err.code).to.equal('MS_DAEMON_CONFIG');
      }
    });

    it('refuses to start with a key that does not match the certificate, never logging the key', async () => {
      const exit = await runDaemonToExit(['--port', '0', '--tls-cert', pki.daemon.certFile, '--tls-key', pki.client.keyFile]);
      expect(exit.code).to.equal(1);
      const failure = exit.logs.find((l) => l.event === 'start-failed') as { err: { code: string; message: string } };
      expect(failure.err.code).to.equal('MS_DAEMON_CONFIG');
      expect(failure.err.message).to.include('TLS');
      expect(JSON.stringify(exit.logs) + exit.stderr).to.not.include('PRIVATE KEY');
    });

    it('never logs the TLS key of a running daemon', async () => {
      await withDaemons(1, { secret, args: tlsArgs(true) }, async ([daemon]) => {
        await tryMap(daemon!, { tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } });
        const body = pki.daemon.key.split('\n')[1]!;
        expect(JSON.stringify(daemon!.logs)).to.not.include(body).and.not.include('PRIVATE KEY');
      });
    });
  });
});
