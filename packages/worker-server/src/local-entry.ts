/**
 * The daemon a coordinator starts for `new Processor(fn, N)`: loopback, a free port, the secret
 * from the environment, N instances. No argument parser to load (yargs alone costs ~65 ms of
 * start-up here), since its caller is code, not a person. argv[2]: the instance count.
 */
import { pino } from 'pino';
import { runDaemonProcess } from './daemon-process.js';

const workers = Number(process.argv[2]);
const logger = pino({ level: 'info' }, pino.destination({ dest: 1, sync: true }));
await runDaemonProcess({
  host: '127.0.0.1',
  port: 0,
  workers,
  secret: process.env.MAPSCALE_SECRET || undefined,
  logger,
}, true);
