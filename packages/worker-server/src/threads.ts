/**
 * What a coordinator needs before it imports an embedded daemon (embedded-daemon.ts): the threads,
 * to start them first, and the bounds its stop keeps. Small on purpose: loaded with `import 'mapscale'`.
 */
export { SpareThreads } from './spare-threads.js';
export { LOCAL_STOP } from './local-defaults.js';
