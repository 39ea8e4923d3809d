/**
 * The far end of the transport measurement: connects to the bench over TCP (a port) or a Unix
 * socket (a path), then echoes every chunk (`echo`) or sends `mib` MiB in 1 MiB writes (`bulk`).
 * Run as `node transport-child.js <echo|bulk> <port|path> [mib]`.
 */
import { connect } from 'node:net';

const [mode, where, mib] = process.argv.slice(2);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
const socket = connect(/^\d+$/.test(where!) ? { host: '127.0.0.1', port: Number(where) } : { path: where! });
socket.setNoDelay?.(true);
socket.on('error', () => process.exit(1));
socket.on('close', () => process.exit(0));
if (mode === 'echo') {
  socket.on('data', (chunk) => socket.write(chunk));
} else {
  const chunk = Buffer.alloc(1024 * 1024, 7);
  let left = Number(mib);
  const pump = (): void => {
    while (left > 0) {
      left--;
      if (!socket.write(chunk)) {
        socket.once('drain', pump);
        return;
      }
    }
    socket.end();
  };
  socket.once('connect', pump);
}
