export * from './errors.js';
export * from './version.js';
export * from './limits.js';
export * from './codec.js';
export * from './frame.js';
export * from './messages.js';
export * from './message-codec.js';
export * from './handshake.js';
