import type { Logger } from 'pino';
import { DashboardRecorder } from './recorder.js';
import { DashboardServer, type DashboardAddress } from './server.js';
import { SnapshotBuilder, type DashboardSource } from './snapshot.js';
import type { ResolvedDashboardOptions } from './options.js';

export type { DashboardAddress } from './server.js';

/**
 * The live dashboard of one Processor: the engine tells `recorder` what happens (per batch, never
 * per job); the server reads snapshots of it on its own pace and streams them to the pages.
 */
export class Dashboard {
  readonly recorder = new DashboardRecorder();
  readonly #server: DashboardServer;
  /** Settles once the page is served, or with the DashboardListenError that prevents it. */
  readonly listening: Promise<DashboardAddress>;

  constructor(options: ResolvedDashboardOptions, source: DashboardSource, logger: Logger) {
    this.#server = new DashboardServer(options, new SnapshotBuilder(source, this.recorder), logger.child({ component: 'dashboard' }));
    this.listening = this.#server.listen();
    // Failures surface through the first map and dashboardAddress(); unobserved, they must not crash the app.
    this.listening.catch(() => {});
  }

  close(): Promise<void> {
    return this.#server.close();
  }
}
