/**
 * What a daemon tells its coordinators about its own load with every pong (about once a second per
 * coordinator): its CPU time so far and its resident memory. Cumulative CPU time rather than a
 * percentage, so the daemon keeps no state per coordinator; each coordinator divides the difference
 * between two pongs by the time between them. Both calls are cheap (no heap walk, unlike
 * process.memoryUsage()).
 */
export function processLoad(): { cpuUs: number; rssBytes: number } {
  const { user, system } = process.cpuUsage();
  return { cpuUs: user + system, rssBytes: process.memoryUsage.rss() };
}
