/** Marks the base class, so shipping stops here even when two copies of MapScale are loaded. */
export const WORK_FUNCTION_BASE = Symbol.for('mapscale.WorkFunction');

/**
 * An instance's construction stack (`{ stack }`, formatted only when read): its frames name the
 * files of the class's own constructors and of the code that made it, where shipping looks for the
 * class's source so a worker can name it after its file in stack traces.
 */
export const CONSTRUCTED_AT = Symbol.for('mapscale.WorkFunction.constructedAt');

/**
 * What a user extends. The constructor runs once, in the app; its own enumerable properties are
 * shipped to every worker instance, which is restored without running the constructor again.
 * `setup()` runs once per worker instance where it lives, `cleanup()` once at its shutdown.
 */
export abstract class WorkFunction<Job = unknown, Result = unknown> {
  static readonly [WORK_FUNCTION_BASE] = true;

  constructor() {
    const at: { stack?: string } = {};
    Error.captureStackTrace(at);
    // Not enumerable: an instance's own enumerable fields are its shipped state.
    Object.defineProperty(this, CONSTRUCTED_AT, { value: at });
  }

  /** Once per worker instance, before its first job: open files, warm caches. */
  setup(): void | Promise<void> {}

  /** One job in, one result out. May be async. */
  abstract call(job: Job): Result | Promise<Result>;

  /** Once per worker instance, when its coordinator shuts down or goes away. */
  cleanup(): void | Promise<void> {}
}

export function isWorkFunctionBase(value: unknown): boolean {
  return typeof value === 'function' && Object.hasOwn(value, WORK_FUNCTION_BASE);
}
