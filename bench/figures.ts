/** How the bench's figures are shown: medians with their range, and ratios taken within a run. */
import { median } from './measure.js';
import type { WorkloadId } from './workloads.js';

/** Per run, in run order; undefined where that run's measurement failed or was not made. */
export type Series = (number | undefined)[];

export const present = (series: Series | undefined): number[] => (series ?? []).filter((v): v is number => v !== undefined && Number.isFinite(v));

/** Median of per-run ratios: both figures of each ratio come from the same run, as the issue asks. */
export function ratio(a: Series | undefined, b: Series | undefined): number | undefined {
  if (!a || !b) return undefined;
  const ratios: number[] = [];
  for (let r = 0; r < a.length; r++) {
    const x = a[r];
    const y = b[r];
    if (x !== undefined && y !== undefined && y > 0) ratios.push(x / y);
  }
  return median(ratios);
}

export type FigureKind = WorkloadId | 'cpu' | 'capacity' | 'seconds' | 'micros';

export function formatValue(workload: FigureKind, v: number): string {
  switch (workload) {
    case 'w1':
    case 'capacity':
      return v >= 1e6 ? `${(v / 1e6).toFixed(2)} M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} k` : v.toFixed(0);
    case 'w2':
      return v.toFixed(3);
    case 'w3':
      return Math.round(v).toLocaleString('en-US');
    case 'w4':
      return v.toFixed(3);
    case 'latency':
    case 'cpu':
    case 'seconds':
      return v >= 10 ? v.toFixed(1) : v.toPrecision(3);
    case 'micros':
      return v >= 100 ? v.toFixed(0) : v.toPrecision(3);
  }
}

export function cell(workload: FigureKind, series: Series | undefined): string {
  const values = present(series);
  if (!series) return '—';
  if (values.length === 0) return 'failed';
  const mid = formatValue(workload, median(values)!);
  const failed = series.length - values.length;
  const range = values.length > 1 ? ` (${formatValue(workload, Math.min(...values))}–${formatValue(workload, Math.max(...values))})` : '';
  return `${mid}${range}${failed > 0 ? ` [${failed} failed]` : ''}`;
}

export function formatRatio(r: number | undefined): string {
  if (r === undefined) return '—';
  return r >= 10 ? `${r.toFixed(0)}×` : `${r.toFixed(2)}×`;
}
