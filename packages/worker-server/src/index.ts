export { startWorkerServer, type WorkerServer } from './server.js';
export { DEFAULT_WORKER_SERVER_OPTIONS, type WorkerServerOptions } from './options.js';
export { WorkFunction, isWorkFunctionBase, WORK_FUNCTION_BASE, CONSTRUCTED_AT, localDaemonEntry, RUNTIME_GLOBAL, RUNTIME_SURFACE } from './runtime.js';
export { RestoreError, ModuleScopeError, WorkerServerConfigError, ResultTooLargeError, HandshakeTimeoutError, BundleStoreError, ListenError, ResultSerializationError } from './errors.js';
/** Path of the daemon's CLI entry. */
export const WORKER_CLI_PATH = new URL('./cli.js', import.meta.url);
export { entryPath, type EntryName } from './entry.js';
export { queryDaemonStatus, type StatusQuery } from './status-client.js';
export type { DaemonStatus } from './daemon-stats.js';
