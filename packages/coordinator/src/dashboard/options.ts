import { InvalidOptionError } from '../errors.js';

/** `new Processor(fn, workers, { dashboard: { port } })`: a live page about this Processor's maps and workers. */
export interface DashboardOptions {
  /** TCP port of the page; 0 picks a free one (see `processor.dashboardAddress()`). */
  port: number;
  /**
   * Address to listen on. Default loopback: the page shows job errors and worker output, and has no
   * authentication, so serving it beyond this host is a choice to make explicitly (see SECURITY.md).
   */
  host?: string;
}

export interface ResolvedDashboardOptions {
  port: number;
  host: string;
}

export const DEFAULT_DASHBOARD_OPTIONS = Object.freeze({ host: '127.0.0.1' });

export function resolveDashboardOptions(options: DashboardOptions | undefined): ResolvedDashboardOptions | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('option "dashboard" must be an object { port, host? }');
  const { port, host = DEFAULT_DASHBOARD_OPTIONS.host } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidOptionError(`option "dashboard.port" must be an integer from 0 to 65535, got ${String(port)}`);
  }
  if (typeof host !== 'string' || host.length === 0) throw new InvalidOptionError('option "dashboard.host" must be a non-empty string');
  return { port, host };
}
