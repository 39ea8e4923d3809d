/** A daemon's load as its pongs tell it: CPU as a percentage of one core (top's convention), and RSS. */
export interface DaemonLoadSample {
  /** Over the time between the last two pongs that carried it; undefined until two have. */
  cpuPercent: number | undefined;
  rssBytes: number | undefined;
}

/**
 * Turns the cumulative CPU time each pong carries into a rate. The daemon sends totals, not rates,
 * so it keeps nothing per coordinator; a daemon too old to send them leaves both undefined.
 */
export class DaemonLoad implements DaemonLoadSample {
  cpuPercent: number | undefined;
  rssBytes: number | undefined;
  #last: { cpuUs: number; at: number } | null = null;

  observe(pong: { cpuUs?: number; rssBytes?: number }): void {
    // A number, but a daemon's word only: what no process could report is ignored.
    if (plausible(pong.rssBytes)) this.rssBytes = pong.rssBytes;
    if (!plausible(pong.cpuUs)) return;
    const at = performance.now();
    const last = this.#last;
    // Two pongs close together measure mostly rounding: wait for a quarter second between samples.
    if (last && at - last.at < 250) return;
    if (last && pong.cpuUs >= last.cpuUs) this.cpuPercent = ((pong.cpuUs - last.cpuUs) / 1000 / (at - last.at)) * 100;
    this.#last = { cpuUs: pong.cpuUs, at };
  }
}

function plausible(value: number | undefined): value is number {
  return value !== undefined && Number.isFinite(value) && value >= 0;
}
