import { entryPath } from './entry.js';
export { startWorkerServer, type WorkerServer } from './server.js';
export { DEFAULT_WORKER_SERVER_OPTIONS, type WorkerServerOptions } from './options.js';
export { WorkFunction, isWorkFunctionBase, WORK_FUNCTION_BASE } from './work-function.js';
export { FramedConnection } from './transport.js';
export { DATA_KEEPALIVE_MS } from './data-listener.js';
export { RestoreError, ModuleScopeError, WorkerServerConfigError } from './errors.js';
/** Path of the daemon's CLI entry. */
export const WORKER_CLI_PATH = new URL('./cli.js', import.meta.url);
/** The lean entry coordinators start local daemons with, `node <it> <instances>`: its bundle when that is current. */
export function localDaemonEntry(): URL {
  return entryPath('local-entry');
}
export { entryPath, type EntryName } from './entry.js';
export { queryDaemonStatus, type StatusQuery } from './status-client.js';
export type { DaemonStatus } from './daemon-stats.js';
