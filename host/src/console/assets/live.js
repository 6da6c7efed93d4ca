// The live view: /metrics read every few seconds, turned into each
// service's throughput, p50/p99 latency and errors, drawn as line charts.

import { call } from './api.js';

/** How often /metrics is read, and how much history the charts keep. */
const EVERY_MS = 2000;
const KEEP_MS = 5 * 60 * 1000;
const COLOURS = ['#2456c4', '#c45a24', '#1f7a3a', '#8a2bb5', '#b3261e', '#0f8a8a', '#a07800', '#555'];
const ERRORS = new Set(['failed', 'trapped', 'timed_out', 'refused']);

/** Each service's invocation counts and duration buckets, from the exposition. */
export function parse(text) {
  const services = new Map();
  const series = (name) => {
    if (!services.has(name)) services.set(name, { ok: 0, errors: 0, buckets: new Map() });
    return services.get(name);
  };
  for (const line of text.split('\n')) {
    const m = /^(wasmstate_invocations_total|wasmstate_invocation_duration_seconds_bucket)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    const s = series(labels.service || '(no service)');
    const value = Number(m[3]);
    if (m[1] === 'wasmstate_invocations_total') {
      if (ERRORS.has(labels.outcome)) s.errors += value;
      else s.ok += value;
    } else if (labels.outcome !== 'refused') {
      // A refusal's time says nothing of how long the service takes.
      const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
      s.buckets.set(le, (s.buckets.get(le) || 0) + value);
    }
  }
  return services;
}

/** The `q` quantile of cumulative `[le, count]` buckets, as Prometheus interpolates it. */
export function quantile(q, buckets) {
  if (!buckets.length) return null;
  const total = buckets[buckets.length - 1][1];
  if (total <= 0) return null;
  const rank = q * total;
  let [lower, below] = [0, 0];
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower;
      const within = count - below;
      return lower + (le - lower) * (within > 0 ? (rank - below) / within : 1);
    }
    [lower, below] = [le, count];
  }
  return lower;
}

/** Rates and latencies between two readings of one service. */
function between(before, after, seconds) {
  const buckets = [...after.buckets.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([le, count]) => [le, count - (before.buckets.get(le) || 0)]);
  const ms = (q) => {
    const s = quantile(q, buckets);
    return s === null ? null : s * 1000;
  };
  return {
    throughput: (after.ok + after.errors - before.ok - before.errors) / seconds,
    errors: (after.errors - before.errors) / seconds,
    p50: ms(0.5),
    p99: ms(0.99),
  };
}

/** Starts reading /metrics and drawing the charts; `onError` hears failures. */
export function start(onError) {
  const points = new Map(); // service → [{at, throughput, errors, p50, p99}]
  let last = null;
  const colour = new Map();
  const tick = async () => {
    try {
      const text = await call('GET', '/metrics', { text: true });
      const now = Date.now();
      const reading = parse(text);
      if (last) {
        const seconds = (now - last.at) / 1000;
        for (const [service, after] of reading) {
          const before = last.reading.get(service) || { ok: 0, errors: 0, buckets: new Map() };
          if (!points.has(service)) points.set(service, []);
          points.get(service).push({ at: now, ...between(before, after, seconds) });
        }
        for (const list of points.values()) {
          while (list.length && list[0].at < now - KEEP_MS) list.shift();
        }
      }
      last = { at: now, reading };
      for (const service of points.keys()) {
        if (!colour.has(service)) colour.set(service, COLOURS[colour.size % COLOURS.length]);
      }
      draw(points, colour, now);
    } catch (error) {
      onError(error);
    }
  };
  tick();
  return setInterval(tick, EVERY_MS);
}

function draw(points, colour, now) {
  chart('chart-throughput', points, colour, now, [['throughput', []]]);
  chart('chart-latency', points, colour, now, [['p99', []], ['p50', [4, 3]]]);
  chart('chart-errors', points, colour, now, [['errors', []]]);
  const legend = document.getElementById('legend');
  legend.replaceChildren(
    ...[...points.keys()].map((service) => {
      const item = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.style.background = colour.get(service);
      item.append(swatch, service);
      item.dataset.service = service;
      return item;
    }),
  );
}

/** Draws `fields` of every service's points on the canvas `id`, y from 0 to the highest value. */
function chart(id, points, colour, now, fields) {
  const canvas = document.getElementById(id);
  const ratio = window.devicePixelRatio || 1;
  const [w, h] = [canvas.clientWidth, canvas.clientHeight];
  canvas.width = w * ratio;
  canvas.height = h * ratio;
  const g = canvas.getContext('2d');
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
  let top = 0;
  for (const list of points.values()) {
    for (const p of list) for (const [f] of fields) top = Math.max(top, p[f] || 0);
  }
  top = top > 0 ? top * 1.15 : 1;
  const pad = { left: 36, right: 6, top: 6, bottom: 14 };
  const x = (at) => pad.left + ((at - (now - KEEP_MS)) / KEEP_MS) * (w - pad.left - pad.right);
  const y = (v) => h - pad.bottom - (v / top) * (h - pad.top - pad.bottom);
  g.strokeStyle = '#e2e2de';
  g.fillStyle = '#6a6f75';
  g.font = '10px system-ui, sans-serif';
  g.lineWidth = 1;
  for (const frac of [0, 0.5, 1]) {
    const v = (top / 1.15) * frac;
    g.beginPath();
    g.moveTo(pad.left, y(v));
    g.lineTo(w - pad.right, y(v));
    g.stroke();
    g.fillText(v >= 100 ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2), 2, y(v) + 3);
  }
  g.fillText('−5 min', pad.left, h - 2);
  g.fillText('now', w - pad.right - 18, h - 2);
  g.lineWidth = 1.6;
  for (const [service, list] of points) {
    g.strokeStyle = colour.get(service);
    for (const [field, dash] of fields) {
      g.setLineDash(dash);
      g.beginPath();
      let drawing = false;
      for (const p of list) {
        if (p[field] === null || p[field] === undefined) {
          drawing = false;
          continue;
        }
        if (drawing) g.lineTo(x(p.at), y(p[field]));
        else g.moveTo(x(p.at), y(p[field]));
        drawing = true;
      }
      g.stroke();
    }
    // A lone reading has no line yet: a dot.
    const [first] = list;
    if (list.length === 1 && first[fields[0][0]] !== null) {
      g.fillStyle = colour.get(service);
      g.beginPath();
      g.arc(x(first.at), y(first[fields[0][0]]), 2.5, 0, 2 * Math.PI);
      g.fill();
    }
  }
  g.setLineDash([]);
  canvas.dataset.points = String([...points.values()].reduce((n, l) => n + l.length, 0));
}
