import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { pino } from 'pino';
import { MAPSCALE_VERSION } from '@mapscale/protocol';
import { startWorkerServer } from './server.js';
import { DEFAULT_WORKER_SERVER_OPTIONS as D } from './options.js';

const argv = yargs(hideBin(process.argv))
  .scriptName('mapscale-worker')
  .usage('$0 [options]\n\nRuns a MapScale worker daemon: coordinators connect over TCP and map jobs over its worker instances.')
  .option('host', { type: 'string', default: D.host, describe: 'address to listen on' })
  .option('port', { type: 'number', default: D.port, describe: 'TCP port (0 picks a free one)' })
  .option('workers', { type: 'number', default: D.workers, describe: 'worker instances (threads) per coordinator' })
  .option('secret-file', { type: 'string', describe: 'file holding the shared secret (else env MAPSCALE_SECRET)' })
  .option('log-level', { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] })
  .option('handshake-timeout-ms', { type: 'number', default: D.handshakeTimeoutMs, describe: 'drop connections that have not finished the handshake by then' })
  .option('max-frame-bytes', { type: 'number', default: D.maxFrameBytes, describe: 'largest frame accepted after authentication' })
  .option('exit-with-parent', { type: 'boolean', default: false, hidden: true, describe: 'stop when stdin closes (for daemons a coordinator starts)' })
  .version(MAPSCALE_VERSION)
  .strict()
  .parseSync();

// Synchronous writes: log lines are events (never per job), and none may be lost at exit.
const logger = pino({ level: argv['log-level'] }, pino.destination({ dest: 1, sync: true }));

function readSecret(): string | undefined {
  if (argv['secret-file']) return readFileSync(argv['secret-file'], 'utf8').trim();
  const fromEnv = process.env.MAPSCALE_SECRET;
  return fromEnv ? fromEnv : undefined;
}

try {
  const server = await startWorkerServer({
    host: argv.host,
    port: argv.port,
    workers: argv.workers,
    secret: readSecret(),
    handshakeTimeoutMs: argv['handshake-timeout-ms'],
    maxFrameBytes: argv['max-frame-bytes'],
    logger,
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'signal', signal });
    server.close().then(() => process.exit(0), (error) => {
      logger.fatal({ event: 'stop-failed', err: error });
      process.exit(1);
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  if (argv['exit-with-parent']) {
    process.stdin.on('end', () => stop('parent-exited'));
    process.stdin.on('error', () => stop('parent-exited'));
    process.stdin.resume();
  }
} catch (error) {
  logger.fatal({ event: 'start-failed', err: error });
  process.exit(1);
}
