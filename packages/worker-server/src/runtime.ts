/**
 * What a coordinator needs of the worker side, without loading the daemon: the WorkFunction base a
 * user extends, the errors raised where work functions are restored, the contract between a bundle
 * and the worker that imports it, and where a local daemon starts from. `import 'mapscale'` loads
 * this module (the `@mapscale/worker-server/runtime` export), never the server.
 */
import { MAPSCALE_VERSION, MapScaleError, PROTOCOL_VERSION } from '@mapscale/protocol';
import { WorkFunction } from './work-function.js';
import { ModuleScopeError, RestoreError } from './errors.js';
import { entryPath } from './entry.js';

export { WorkFunction, isWorkFunctionBase, WORK_FUNCTION_BASE, CONSTRUCTED_AT } from './work-function.js';
export { ModuleScopeError, RestoreError, ResultTooLargeError, ResultSerializationError } from './errors.js';

/**
 * Inside a bundle, `import { … } from 'mapscale'` is served from this global, which the worker sets
 * before importing the bundle: the base class must be the worker's own (shipping stops at it).
 */
export const RUNTIME_GLOBAL = 'mapscale.runtime';

/** What the worker serves under RUNTIME_GLOBAL; the bundle's stand-in module reads these names. */
export const RUNTIME_SURFACE: Readonly<Record<string, unknown>> = Object.freeze({
  WorkFunction, ModuleScopeError, RestoreError, MapScaleError, MAPSCALE_VERSION, PROTOCOL_VERSION,
});

/** The lean entry coordinators start local daemons with, `node <it> <instances>`: its bundle when that is current. */
export function localDaemonEntry(): URL {
  return entryPath('local-entry');
}
