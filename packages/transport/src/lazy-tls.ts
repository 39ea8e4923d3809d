import { createRequire } from 'node:module';

let loaded: typeof import('node:tls') | undefined;

/**
 * node:tls, loaded on first use: ~10 ms of start-up (of a coordinator, a daemon, and every instance
 * thread, which each serve a data port) that nothing without TLS needs. Sync, so callers stay as
 * they were: a builtin loads through require at once.
 */
export function nodeTls(): typeof import('node:tls') {
  loaded ??= createRequire(import.meta.url)('node:tls') as typeof import('node:tls');
  return loaded;
}
