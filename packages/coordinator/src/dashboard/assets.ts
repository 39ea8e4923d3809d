import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface Asset {
  type: string;
  body: Buffer;
}

/** The page's own files, shipped in the package (dashboard-ui/), beside dist/. */
const UI = new URL('../../dashboard-ui/', import.meta.url);

/**
 * Every file the page loads, by the path it asks for: the page and uPlot from this package's own
 * dependencies, never a CDN, so the dashboard works on a host without Internet access and the page
 * makes no request beyond this server. Read once, on the first dashboard's start.
 */
let assets: Map<string, Asset> | undefined;

export function dashboardAssets(): Map<string, Asset> {
  if (assets) return assets;
  const require = createRequire(import.meta.url);
  const ui = (name: string) => readFileSync(fileURLToPath(new URL(name, UI)));
  const vendor = (name: string) => readFileSync(require.resolve(`uplot/dist/${name}`));
  assets = new Map([
    ['/', { type: 'text/html; charset=utf-8', body: ui('index.html') }],
    ['/dashboard.js', { type: 'text/javascript; charset=utf-8', body: ui('dashboard.js') }],
    ['/dashboard.css', { type: 'text/css; charset=utf-8', body: ui('dashboard.css') }],
    ['/vendor/uPlot.iife.min.js', { type: 'text/javascript; charset=utf-8', body: vendor('uPlot.iife.min.js') }],
    ['/vendor/uPlot.min.css', { type: 'text/css; charset=utf-8', body: vendor('uPlot.min.css') }],
  ]);
  return assets;
}
