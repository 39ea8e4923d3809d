// The MapScale dashboard page: one EventSource on /events, one tick every ~400 ms. Every list kept
// here is capped, like the server's, so the page stays light however long the map. Text that came
// from workers (errors, output) is only ever set as textContent, never parsed as HTML.
'use strict';

const LIMITS = { history: 600, tasks: 4000, events: 100, errors: 50, output: 100, taskWindowMs: 20000, taskRows: 48 };
const state = { history: [], tasks: [], events: [], errors: [], output: [], latest: null };
let chart = null;

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key === 'width') node.style.width = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function capped(list, items, max) {
  list.push(...items);
  if (list.length > max) list.splice(0, list.length - max);
}

const number = new Intl.NumberFormat('en');
function fmt(value, digits = 0) {
  return value === undefined || value === null ? '–' : number.format(Number(value.toFixed(digits)));
}
function duration(ms) {
  if (ms === undefined || ms === null) return '–';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
function bytes(n) {
  if (n === undefined || n === null) return '–';
  return n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(0)} MiB`;
}
function clock(at) {
  return new Date(at).toLocaleTimeString('en-GB', { hour12: false });
}

function renderRuns(tick) {
  const body = $('runs').tBodies[0];
  const rows = [...tick.runs.map((run) => [run, false]), ...tick.finished.slice().reverse().map((run) => [run, true])];
  body.replaceChildren(...rows.map(([run, ended]) => {
    const share = run.total ? run.done / run.total : 0;
    const bar = el('div', { class: 'progress' }, [
      el('div', { width: `${(share * 100).toFixed(2)}%` }),
      ...(run.failed > 0 && run.total ? [el('div', { class: 'failed', width: `${Math.max(0.3, (run.failed / run.total) * 100)}%` })] : []),
    ]);
    return el('tr', { class: ended ? `ended run-${run.status}` : 'running', 'data-run': String(run.id), 'data-done': String(run.done), 'data-total': String(run.total ?? '') }, [
      el('td', { text: `#${run.id}${ended ? ` (${run.status})` : ''}` }),
      el('td', {}, [bar]),
      el('td', { class: 'done', text: `${fmt(run.done)} / ${run.total === undefined ? '?' : fmt(run.total)}` }),
      el('td', { text: fmt(run.failed) }),
      el('td', { text: fmt(run.jobsPerSecond) }),
      el('td', { text: ended ? '–' : duration(run.etaMs) }),
      el('td', { text: duration(run.elapsedMs) }),
    ]);
  }));
  if (rows.length === 0) body.replaceChildren(el('tr', {}, [el('td', { class: 'empty', colspan: '7', text: 'no map running' })]));
  $('runs-count').textContent = tick.runsActive > tick.runs.length ? `(${tick.runsActive} running, newest ${tick.runs.length} shown)` : `(${tick.runsActive} running)`;
}

function renderWorkers(tick) {
  const body = $('workers').tBodies[0];
  body.replaceChildren(...tick.workers.map((w) => el('tr', { class: `state-${w.state}`, 'data-worker': w.address }, [
    el('td', { text: w.address }),
    el('td', { class: 'state', text: w.state }),
    el('td', { text: fmt(w.instances) }),
    el('td', { class: 'jobs', text: fmt(w.jobs) }),
    el('td', { text: `${fmt(w.busyPercent)} %` }),
    el('td', { text: w.roundTripMs === undefined ? '–' : `${fmt(w.roundTripMs, 2)} ms` }),
    el('td', { text: fmt(w.credit) }),
    el('td', { text: fmt(w.failures) }),
    el('td', { text: `${w.losses} / ${w.reconnects}` }),
    el('td', { class: 'cpu', text: w.cpuPercent === undefined ? '–' : `${fmt(w.cpuPercent)} %` }),
    el('td', { class: 'rss', text: bytes(w.rssBytes) }),
  ])));
  $('workers-count').textContent = tick.workersTotal > tick.workers.length ? `(${tick.workersTotal}, first ${tick.workers.length} shown)` : `(${tick.workersTotal})`;
}

function renderLog(id, entries, line) {
  const list = $(id);
  list.replaceChildren(...entries.slice().reverse().map((entry) => {
    const [text, cls] = line(entry);
    return el('li', { class: cls }, [el('time', { text: clock(entry.at) }), text]);
  }));
  if (entries.length === 0) list.replaceChildren(el('li', { class: 'empty', text: 'nothing yet' }));
}

function renderLogs(tick) {
  renderLog('events', state.events, (e) => [`${e.kind} ${e.worker}${e.detail ? `: ${e.detail}` : ''}`, e.kind]);
  renderLog('errors', state.errors, (e) => [`map #${e.run} job ${e.jobIndex} on ${e.worker}: ${e.message}`, e.kind]);
  renderLog('output', state.output, (o) => [`[${o.worker}${o.jobIndex === undefined ? '' : ` job ${o.jobIndex}`}] ${o.text.replace(/\n$/, '')}`, o.stream]);
  $('errors-count').textContent = tick.errorsTotal > 0 ? `(${fmt(tick.errorsTotal)} in all)` : '';
}

function renderChart() {
  const data = [state.history.map((p) => p[0]), state.history.map((p) => p[1]), state.history.map((p) => p[2])];
  const box = $('throughput');
  const width = Math.max(300, box.clientWidth);
  if (!chart) {
    chart = new uPlot({
      width, height: 220,
      scales: { x: { time: true }, pct: { range: [0, 100] } },
      series: [
        {},
        { label: 'jobs/s', stroke: '#2563eb', width: 2, fill: 'rgba(37,99,235,0.08)', value: (u, v) => (v === null ? '–' : fmt(v)) },
        { label: 'busy %', stroke: '#b45309', width: 1, scale: 'pct', value: (u, v) => (v === null ? '–' : `${fmt(v)} %`) },
      ],
      axes: [{}, { label: 'jobs/s', size: 60 }, { scale: 'pct', side: 1, label: 'busy %', grid: { show: false } }],
    }, data, box);
  } else {
    if (chart.width !== width) chart.setSize({ width, height: 220 });
    chart.setData(data);
  }
}

function colour(run) {
  return `hsl(${(run * 67) % 360} 65% 48%)`;
}

function renderTasks(tick) {
  const canvas = $('tasks');
  const now = tick.at;
  const from = now - LIMITS.taskWindowMs;
  state.tasks = state.tasks.filter((t) => t.end >= from);
  const instances = [...new Set(state.tasks.map((t) => t.instance))].sort().slice(0, LIMITS.taskRows);
  const rowHeight = 14;
  const label = 170;
  const cssWidth = canvas.clientWidth || 800;
  const cssHeight = Math.max(1, instances.length) * rowHeight + 18;
  const ratio = window.devicePixelRatio || 1;
  canvas.style.height = `${cssHeight}px`;
  canvas.width = Math.round(cssWidth * ratio);
  canvas.height = Math.round(cssHeight * ratio);
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, cssWidth, cssHeight);
  g.font = '11px ui-monospace, monospace';
  g.textBaseline = 'middle';
  const span = cssWidth - label - 4;
  const x = (t) => label + ((t - from) / LIMITS.taskWindowMs) * span;
  const rowOf = new Map(instances.map((name, i) => [name, i]));
  instances.forEach((name, i) => {
    g.fillStyle = i % 2 ? '#f3f4f6' : '#fff';
    g.fillRect(label, i * rowHeight, span, rowHeight);
    g.fillStyle = '#1d2430';
    g.fillText(name.length > 26 ? `…${name.slice(-25)}` : name, 2, i * rowHeight + rowHeight / 2);
  });
  for (const task of state.tasks) {
    const row = rowOf.get(task.instance);
    if (row === undefined) continue;
    const left = x(Math.max(from, task.start));
    g.fillStyle = colour(task.run);
    g.fillRect(left, row * rowHeight + 2, Math.max(1, x(task.end) - left), rowHeight - 4);
  }
  g.fillStyle = '#6b7280';
  const bottom = instances.length * rowHeight + 10;
  for (let s = 0; s <= LIMITS.taskWindowMs / 1000; s += 5) g.fillText(`-${LIMITS.taskWindowMs / 1000 - s} s`, x(from + s * 1000) - 10, bottom);
  if (instances.length === 0) g.fillText('no batches in the last 20 s', label, rowHeight / 2);
}

function apply(tick) {
  if (tick.reset) {
    state.history = tick.history ?? [];
    state.tasks = [];
    state.events = [];
    state.errors = [];
    state.output = [];
  } else {
    capped(state.history, [tick.point], LIMITS.history);
  }
  capped(state.tasks, tick.tasks, LIMITS.tasks);
  capped(state.events, tick.events, LIMITS.events);
  capped(state.errors, tick.errors, LIMITS.errors);
  capped(state.output, tick.output, LIMITS.output);
  state.latest = tick;
  const status = $('status');
  status.textContent = tick.status;
  status.className = `badge ${tick.status}`;
  $('updated').textContent = `updated ${clock(tick.at)}`;
  renderRuns(tick);
  renderChart();
  renderWorkers(tick);
  renderTasks(tick);
  renderLogs(tick);
}

function connect() {
  const source = new EventSource('/events');
  const link = $('link');
  source.onopen = () => {
    link.textContent = 'live';
    link.className = 'badge live';
  };
  source.onmessage = (event) => apply(JSON.parse(event.data));
  // EventSource reconnects by itself (retry: 1000); a Processor that shut down stays away.
  source.onerror = () => {
    link.textContent = state.latest?.status === 'closed' ? 'ended' : 'reconnecting';
    link.className = `badge ${state.latest?.status === 'closed' ? 'closed' : 'reconnecting'}`;
    if (state.latest?.status === 'closed') source.close();
  };
}

window.addEventListener('resize', () => state.latest && renderTasks(state.latest));
connect();
