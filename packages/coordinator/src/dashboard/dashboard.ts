import type { Logger } from 'pino';
import { DashboardRecorder } from './recorder.js';
import type { DashboardAddress, DashboardServer } from './server.js';
import type { DashboardSource } from './snapshot.js';
import type { ResolvedDashboardOptions } from './options.js';

export type { DashboardAddress } from './server.js';

/**
 * The live dashboard of one Processor: the engine tells `recorder` what happens (per batch, never
 * per job); the server reads snapshots of it on its own pace and streams them to the pages.
 */
export class Dashboard {
  readonly recorder = new DashboardRecorder();
  readonly #server: Promise<DashboardServer>;
  /** Settles once the page is served, or with the DashboardListenError that prevents it. */
  readonly listening: Promise<DashboardAddress>;

  constructor(options: ResolvedDashboardOptions, source: DashboardSource, logger: Logger) {
    // node:http and the snapshot code load only for an app that asks for a dashboard, so that
    // `import 'mapscale'` stays as lean as issue 13 made it; the recorder is ready at once.
    this.#server = Promise.all([import('./server.js'), import('./snapshot.js')]).then(([{ DashboardServer }, { SnapshotBuilder }]) =>
      new DashboardServer(options, new SnapshotBuilder(source, this.recorder), logger.child({ component: 'dashboard' })));
    this.listening = this.#server.then((server) => server.listen());
    // Failures surface through the first map and dashboardAddress(); unobserved, they must not crash the app.
    this.listening.catch(() => {});
  }

  async close(): Promise<void> {
    // A listen still under way is let finish, so that close() finds the server listening and stops it.
    await this.listening.catch(() => {});
    await (await this.#server.catch(() => null))?.close();
  }
}
