export { Processor, type WorkFunctionInput, type WorkersInput } from './processor.js';
export { WorkFunction, ModuleScopeError, RestoreError } from '@mapscale/worker-server';
export { DEFAULT_PROCESSOR_OPTIONS, type ProcessorOptions } from './options.js';
export {
  JobError, SetupError, CleanupError, ProcessorClosedError, NoWorkersError, ShippingError, InvalidOptionError, WorkerLostError,
} from './errors.js';
export { LocalDaemonError } from './local-daemon.js';
export {
  MapScaleError, ProtocolError, FrameTooLargeError, ProtocolVersionError, AuthenticationError,
  ConnectionClosedError, ConnectError, RemoteProtocolError, MAPSCALE_VERSION, PROTOCOL_VERSION,
} from '@mapscale/protocol';
