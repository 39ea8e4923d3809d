import { readFileSync, statSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { pino } from 'pino';
import { MAPSCALE_VERSION } from '@mapscale/protocol';
import { reportStartFailure, runDaemonProcess } from './daemon-process.js';
import { DEFAULT_WORKER_SERVER_OPTIONS as D } from './options.js';
import { WorkerServerConfigError } from './errors.js';

// Read first thing, before parsing and starting: see ParentWatch.
const PARENT_PID = process.ppid;

// `mapscale-worker status host:port` is a client of a running daemon, not a daemon.
if (hideBin(process.argv)[0] === 'status') {
  const { runStatusCommand } = await import('./status-command.js');
  process.exit(await runStatusCommand(hideBin(process.argv).slice(1)));
}

const argv = yargs(hideBin(process.argv))
  .scriptName('mapscale-worker')
  .usage('$0 [options]\n\nRuns a MapScale worker daemon: coordinators connect over TCP and map jobs over its worker instances.')
  .option('host', { type: 'string', default: D.host, describe: 'address to listen on' })
  .option('port', { type: 'number', default: D.port, describe: 'TCP port (0 picks a free one)' })
  .option('workers', { type: 'number', default: D.workers, describe: 'worker instances (threads) per coordinator' })
  .option('secret-file', { type: 'string', describe: 'file holding the shared secret (else env MAPSCALE_SECRET); required off loopback' })
  .option('insecure', { type: 'boolean', default: D.insecure, describe: 'allow a non-loopback --host without a secret: anyone who can connect can run code (logged loudly)' })
  .option('tls-cert', { type: 'string', describe: 'serve over TLS: PEM file of this daemon\'s certificate (chain)' })
  .option('tls-key', { type: 'string', describe: 'PEM file of its private key' })
  .option('tls-ca', { type: 'string', describe: 'PEM file of the CA(s) whose client certificates coordinators must present (mutual TLS)' })
  .option('max-connections', { type: 'number', default: D.maxConnections, describe: 'connections open at once; more are refused' })
  .option('data-connections', { type: 'boolean', default: D.dataConnections, describe: 'give each worker instance its own data connection on a fresh port (--no-data-connections: jobs use the daemon port only)' })
  .option('data-ports', { type: 'string', describe: 'LOW-HIGH: the ports data connections listen on (default: any free port), to open in a firewall' })
  .option('max-unauthenticated', { type: 'number', default: D.maxUnauthenticated, describe: 'connections still in their handshake at once; more are refused' })
  .option('log-level', { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] })
  .option('handshake-timeout-ms', { type: 'number', default: D.handshakeTimeoutMs, describe: 'drop connections that have not finished the handshake by then' })
  .option('max-frame-bytes', { type: 'number', default: D.maxFrameBytes, describe: 'largest frame accepted after authentication' })
  .option('cache-dir', { type: 'string', default: D.cacheDir, describe: 'where work-function bundles are cached (external imports resolve from here upwards)' })
  .option('cache-max-bytes', { type: 'number', default: D.cacheMaxBytes, describe: 'bound of the bundle cache; least recently used bundles go first' })
  .option('stop-grace-ms', { type: 'number', default: D.stopGraceMs, describe: 'on SIGTERM or a coordinator lost, how long a running job may finish before its thread is terminated' })
  .option('stop-deadline-ms', { type: 'number', default: D.stopDeadlineMs, describe: 'a stopping daemon exits at most this long after --stop-grace-ms, whatever cleanup() still runs (a second SIGTERM: at once)' })
  .option('cleanup-timeout-ms', { type: 'number', default: D.cleanupTimeoutMs, describe: 'on SIGTERM or a coordinator lost, how long cleanup() may run before its thread is terminated' })
  .option('exit-with-parent', { type: 'boolean', default: false, hidden: true, describe: 'stop when stdin closes (for daemons a coordinator starts)' })
  .epilogue('Status of a running daemon: mapscale-worker status host:port [--secret-file F] [--tls-ca F] [--json]')
  .version(MAPSCALE_VERSION)
  .strict()
  .parseSync();

// Synchronous writes: log lines are events (never per job), and none may be lost at exit.
const logger = pino({ level: argv['log-level'] }, pino.destination({ dest: 1, sync: true }));

/** Reads a file the daemon needs; the error names the flag and the file, never what is in it. */
function readConfigFile(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new WorkerServerConfigError(`cannot read the ${flag} file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** Like ssh with its keys: a file others may read is worth a warning. */
function warnIfShared(flag: string, path: string): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) logger.warn({ event: 'file-permissions', flag, file: path, mode: mode.toString(8), hint: 'readable by other users: chmod 600 it' });
}

function readSecret(): string | undefined {
  const fromEnv = process.env.MAPSCALE_SECRET;
  // Work functions run in this process's threads and child processes inherit its environment:
  // neither needs the secret.
  delete process.env.MAPSCALE_SECRET;
  if (argv['secret-file']) {
    const secret = readConfigFile('--secret-file', argv['secret-file']).trim();
    if (secret.length === 0) throw new WorkerServerConfigError(`the --secret-file file ${argv['secret-file']} is empty`);
    warnIfShared('--secret-file', argv['secret-file']);
    return secret;
  }
  return fromEnv ? fromEnv : undefined;
}

function readTls(): { cert: string; key: string; ca?: string } | undefined {
  const { 'tls-cert': cert, 'tls-key': key, 'tls-ca': ca } = argv;
  if (cert === undefined && key === undefined) {
    if (ca !== undefined) throw new WorkerServerConfigError('--tls-ca needs --tls-cert and --tls-key: client certificates are checked only over TLS');
    return undefined;
  }
  if (cert === undefined || key === undefined) throw new WorkerServerConfigError('TLS needs both --tls-cert and --tls-key');
  const pem = {
    cert: readConfigFile('--tls-cert', cert),
    key: readConfigFile('--tls-key', key),
    ca: ca === undefined ? undefined : readConfigFile('--tls-ca', ca),
  };
  warnIfShared('--tls-key', key);
  return pem;
}

/** "7101-7164" → [7101, 7164]; the range itself is checked with the other options. */
function parsePortRange(text: string | undefined): [number, number] | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim());
  if (!match) throw new WorkerServerConfigError(`--data-ports must be LOW-HIGH (e.g. 7101-7164), got ${JSON.stringify(text)}`);
  return [Number(match[1]), Number(match[2])];
}

try {
  const options = {
    host: argv.host,
    port: argv.port,
    workers: argv.workers,
    secret: readSecret(),
    insecure: argv.insecure,
    tls: readTls(),
    maxConnections: argv['max-connections'],
    maxUnauthenticated: argv['max-unauthenticated'],
    dataConnections: argv['data-connections'],
    dataPorts: parsePortRange(argv['data-ports']),
    handshakeTimeoutMs: argv['handshake-timeout-ms'],
    maxFrameBytes: argv['max-frame-bytes'],
    cacheDir: argv['cache-dir'],
    cacheMaxBytes: argv['cache-max-bytes'],
    stopGraceMs: argv['stop-grace-ms'],
    stopDeadlineMs: argv['stop-deadline-ms'],
    cleanupTimeoutMs: argv['cleanup-timeout-ms'],
    logger,
  };
  await runDaemonProcess(options, argv['exit-with-parent'] ? { parentPid: PARENT_PID } : null);
} catch (error) {
  // Reading the secret or TLS files failed: nothing was started.
  reportStartFailure(logger, error, true);
  process.exit(1);
}
