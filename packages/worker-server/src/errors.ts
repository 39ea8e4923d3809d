import { MapScaleError } from '@mapscale/protocol';

/** A shipped work function could not be rebuilt on the worker. */
export class RestoreError extends MapScaleError {
  override readonly code = 'MS_RESTORE_FAILED';
}

/**
 * A by-value class used a name from its module's scope, which does not travel with it.
 * Raised in place of the ReferenceError, which stays as `cause`.
 */
export class ModuleScopeError extends MapScaleError {
  override readonly code = 'MS_MODULE_SCOPE';
}

/** The daemon could not start as configured. */
export class WorkerServerConfigError extends MapScaleError {
  override readonly code = 'MS_INVALID_OPTION';
}
