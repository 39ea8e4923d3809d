import type { Logger } from 'pino';
import type { OutputMessage } from '@mapscale/protocol';
import type { ResolvedProcessorOptions } from '../options.js';

/**
 * What user code printed on a worker, where the app asked for it (`workerOutput`): on stderr, each
 * line tagged `[host address#instance job N]`, or as `worker-output` events on the logger.
 */
export function writeWorkerOutput(
  where: ResolvedProcessorOptions['workerOutput'], log: Logger, worker: { label: string; hostname: string | undefined },
  message: OutputMessage, jobIndex: number | undefined,
): void {
  const name = `${worker.label}#${message.slot}`;
  if (where === 'logger') {
    log.info({ event: 'worker-output', host: worker.hostname, worker: name, jobIndex, phase: message.phase, stream: message.stream, text: message.text });
    return;
  }
  const place = jobIndex !== undefined ? `job ${jobIndex}` : message.phase;
  const prefix = `[${worker.hostname ?? worker.label} ${name} ${place}] `;
  process.stderr.write(message.text.split('\n').map((line) => prefix + line).join('\n') + '\n');
}
