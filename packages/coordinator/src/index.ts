export { Processor, type WorkFunctionInput, type WorkersInput, type Jobs, type ProcessorEvents } from './processor.js';
export type { Settled } from './result-stores.js';
export type { WorkerEvent, WorkerStats, MapProgress } from './engine.js';
export { WorkFunction, ModuleScopeError, RestoreError, ResultTooLargeError, ResultSerializationError } from '@mapscale/worker-server/runtime';
export { DEFAULT_PROCESSOR_OPTIONS, type ProcessorOptions, type ProcessorTlsOptions, type MapOptions } from './options.js';
export type { DashboardOptions } from './dashboard/options.js';
export type { DashboardAddress } from './dashboard/dashboard.js';
export {
  JobError, JobTooLargeError, SetupError, CleanupError, ProcessorClosedError, NoWorkersError, ShippingError, InvalidOptionError,
  WorkerCrashedError, JobTimeoutError, AbortError, HeartbeatTimeoutError, TLSError, InputError, JobSerializationError, DashboardListenError,
} from './errors.js';
export { LocalDaemonError } from './local-daemon.js';
export {
  MapScaleError, ProtocolError, FrameTooLargeError, ProtocolVersionError, AuthenticationError,
  ConnectionClosedError, ConnectError, RemoteProtocolError, NotADaemonError, CleanupTimeoutError, MAPSCALE_VERSION, PROTOCOL_VERSION,
} from '@mapscale/protocol';
