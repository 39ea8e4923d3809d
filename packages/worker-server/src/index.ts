export { startWorkerServer, type WorkerServer } from './server.js';
export { DEFAULT_WORKER_SERVER_OPTIONS, type WorkerServerOptions } from './options.js';
export { WorkFunction, isWorkFunctionBase, WORK_FUNCTION_BASE } from './work-function.js';
export { FramedConnection } from './transport.js';
export { RestoreError, ModuleScopeError, WorkerServerConfigError } from './errors.js';
/** Path of the daemon's CLI entry, for coordinators that start local daemons. */
export const WORKER_CLI_PATH = new URL('./cli.js', import.meta.url);
