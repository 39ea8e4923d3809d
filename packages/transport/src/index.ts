export { FramedConnection, DATA_KEEPALIVE_MS, type FramedConnectionEvents } from './framed-connection.js';
export { openConnection, explainHandshakeFailure, type TlsClientOptions } from './dial.js';
export { parseAddress, type DaemonAddress } from './address.js';
export { ReplyWaiter } from './reply.js';
export { TLSError } from './errors.js';
export { refusalError } from './refusal.js';
export { nodeTls } from './lazy-tls.js';
