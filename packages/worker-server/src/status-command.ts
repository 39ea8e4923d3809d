import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import { MAPSCALE_VERSION } from '@mapscale/protocol';
import { queryDaemonStatus } from './status-client.js';

/** `mapscale-worker status host:port`: prints a daemon's status; exit 0, or 1 with the reason. */
export async function runStatusCommand(args: string[]): Promise<number> {
  const argv = yargs(args)
    .scriptName('mapscale-worker status')
    .usage('$0 <host:port> [options]\n\nAsks a running daemon (authenticated, as coordinators are) for its version, uptime, slots, sessions, jobs done and errors.')
    .positional('address', { type: 'string', describe: 'the daemon, host:port' })
    .option('secret-file', { type: 'string', describe: 'file holding the shared secret (else env MAPSCALE_SECRET)' })
    .option('tls-ca', { type: 'string', describe: 'PEM file of the CA that signed the daemon\'s certificate: connect over TLS' })
    .option('tls-cert', { type: 'string', describe: 'client certificate, for daemons that require one' })
    .option('tls-key', { type: 'string', describe: 'its private key' })
    .option('servername', { type: 'string', describe: 'name to check the daemon\'s certificate against' })
    .option('timeout-ms', { type: 'number', default: 10_000 })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON instead of lines' })
    .demandCommand(1, 'give the daemon as host:port')
    .version(MAPSCALE_VERSION)
    .strict()
    .parseSync();
  const address = String(argv._[0]);
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(address);
  if (!match) {
    process.stderr.write(`mapscale-worker status: ${JSON.stringify(address)} is not host:port\n`);
    return 2;
  }
  const read = (path: string | undefined) => (path === undefined ? undefined : readFileSync(path, 'utf8'));
  const secret = argv['secret-file'] ? read(argv['secret-file'])!.trim() : process.env.MAPSCALE_SECRET || undefined;
  const tls = argv['tls-ca'] || argv['tls-cert']
    ? { ca: read(argv['tls-ca']), cert: read(argv['tls-cert']), key: read(argv['tls-key']), servername: argv.servername }
    : undefined;
  try {
    const status = await queryDaemonStatus({
      host: (match[1] ?? match[2])!, port: Number(match[3]), secret, tls, timeoutMs: argv['timeout-ms'],
      secretHint: 'give --secret-file F (or set env MAPSCALE_SECRET)',
    });
    if (argv.json) {
      process.stdout.write(`${JSON.stringify(status)}\n`);
    } else {
      const lines = Object.entries(status).map(([key, value]) => `${key.padEnd(16)} ${key === 'uptimeMs' ? `${value} (${formatUptime(value as number)})` : value}`);
      process.stdout.write(`${address}\n${lines.join('\n')}\n`);
    }
    return 0;
  } catch (error) {
    const e = error as Error & { code?: string };
    process.stderr.write(`mapscale-worker status: ${e.code ?? e.name}: ${e.message}\n`);
    return 1;
  }
}

function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h ${Math.floor((s % 3600) / 60)}m ${s % 60}s`;
}
