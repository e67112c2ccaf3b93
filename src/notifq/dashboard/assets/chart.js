// Messages per second over time: stacked bars (sent, failed) on a <canvas>.
//
// Counts are kept in buckets keyed by time (server clock, corrected by the measured skew),
// seeded from the campaign's timeline endpoint and then extended by the live counters.
// Colours come from CSS custom properties so the stylesheet stays the one place for them.

import { fmtRate, h } from './dom.js';

const HEIGHT = 220;
const MIN_WINDOW = 30; // buckets always shown, so a young campaign's first bars are not a full-width block
const MAX_WINDOW = 300; // older buckets scroll off the left edge
const PAD = { top: 12, right: 12, bottom: 26, left: 48 };

export class RateChart {
  constructor({ label }) {
    this.label = label;
    this.bucketMs = 1000;
    this.buckets = new Map(); // bucket index -> {sent, failed}; only the last MAX_WINDOW or so (see prune)
    this.newest = -Infinity; // the highest bucket index ever added
    this.skewMs = 0; // server time minus browser time
    this.endMs = null; // freeze the right edge once the campaign is finished
    this.startMs = null;
    this.canvas = h('canvas', { className: 'chart__canvas', role: 'img', 'aria-label': label });
    this.summary = h('p', { className: 'chart__summary', dataset: { role: 'chart-summary' } });
    this.el = h(
      'figure',
      { className: 'chart' },
      this.canvas,
      h(
        'figcaption',
        { className: 'chart__legend' },
        h('span', { className: 'legend legend--sent' }, 'Sent'),
        h('span', { className: 'legend legend--failed' }, 'Failed'),
        this.summary,
      ),
    );
    this.pending = false;
    // Redraw when the card changes width (window resize, phone rotation).
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.canvas);
  }

  /** Stop observing (the view is going away). */
  dispose() {
    this.resizeObserver.disconnect();
  }

  /** The server's clock from a response Date header, so live and seeded buckets line up. */
  setServerDate(dateHeader) {
    const server = Date.parse(dateHeader || '');
    if (!Number.isNaN(server)) this.skewMs = server - Date.now();
  }

  now() {
    return Date.now() + this.skewMs;
  }

  /** Replace the data with the timeline endpoint's points. */
  seed(bucketSeconds, points) {
    this.bucketMs = Math.max(1, Number(bucketSeconds) || 1) * 1000;
    this.buckets.clear();
    this.newest = -Infinity;
    for (const p of points || []) this.add(Date.parse(p.at), p.sent || 0, p.failed || 0);
    this.schedule();
  }

  /** Count `sent` and `failed` completions at server time `atMs` (default: now). */
  add(atMs, sent, failed) {
    if (!(sent > 0 || failed > 0) || Number.isNaN(atMs)) return;
    const key = Math.floor((atMs ?? this.now()) / this.bucketMs);
    const bucket = this.buckets.get(key) || { sent: 0, failed: 0 };
    bucket.sent += sent;
    bucket.failed += failed;
    this.buckets.set(key, bucket);
    this.newest = Math.max(this.newest, key);
    this.prune();
    this.schedule();
  }

  /**
   * Forget buckets that can no longer be shown: a tab left open for days would otherwise keep one per
   * second for ever (and the chart slow down with it). Older than MAX_WINDOW before the newest bucket is
   * off the left edge whatever the right edge is (now, or a finished campaign's end, both at or after the
   * newest data). Relative to the newest bucket rather than to now, so seeding a campaign that finished
   * long ago keeps its points. A full pass only once the map has doubled: amortised O(1) per add.
   */
  prune() {
    if (this.buckets.size <= 2 * MAX_WINDOW) return;
    const oldest = this.newest - MAX_WINDOW;
    for (const key of this.buckets.keys()) if (key < oldest) this.buckets.delete(key);
  }

  /** Stop (or with null, resume) moving the right edge with the clock. */
  freeze(atMs) {
    this.endMs = atMs;
    this.schedule();
  }

  /**
   * Average messages/s over the last `seconds`, ignoring the bucket still filling. When the
   * activity began inside that window, only the time since then counts (a campaign 3 s old
   * sending 80/s is at 80/s, not 24/s).
   */
  rate(seconds = 10) {
    // A finished campaign's chart is frozen: measure up to its end, not up to now.
    const last = Math.floor((this.endMs ?? this.now()) / this.bucketMs) - 1;
    const n = Math.max(1, Math.round((seconds * 1000) / this.bucketMs));
    let total = 0;
    let first = null;
    for (let k = last - n + 1; k <= last; k += 1) {
      const b = this.buckets.get(k);
      if (b && b.sent + b.failed > 0) {
        total += b.sent + b.failed;
        if (first === null) first = k;
      }
    }
    if (first === null) return 0;
    // Any activity before the first busy bucket? (A loop with an early exit: this runs every second, and
    // copying every key into an array each time is what it must not do.)
    let earlier = false;
    for (const k of this.buckets.keys()) {
      if (k < first) {
        earlier = true;
        break;
      }
    }
    const span = earlier ? n : last - first + 1;
    return total / ((span * this.bucketMs) / 1000);
  }

  /** The campaign's creation time: the left edge of the chart while it is young. */
  setStart(atMs) {
    this.startMs = Number.isNaN(atMs) ? null : atMs;
  }

  /** Redraw at most once per frame, however many updates arrive. */
  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  /** The visible window of bucket indexes [first, last]: from the start (or the oldest data) to now. */
  window() {
    const lastKey = Math.floor((this.endMs ?? this.now()) / this.bucketMs);
    // A loop, not Math.min(...keys): spreading a large array into arguments throws a RangeError.
    let earliest = this.startMs ? Math.floor(this.startMs / this.bucketMs) : Infinity;
    for (const k of this.buckets.keys()) if (k < earliest) earliest = k;
    if (earliest === Infinity) earliest = lastKey;
    const span = Math.min(MAX_WINDOW, Math.max(MIN_WINDOW, lastKey - earliest + 1));
    return [lastKey - span + 1, lastKey];
  }

  draw() {
    const { canvas } = this;
    const width = canvas.clientWidth;
    if (!width) return; // not in the document (yet)
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(HEIGHT * ratio);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, HEIGHT);
    const css = getComputedStyle(canvas);
    const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    const [first, last] = this.window();
    const perSecond = 1000 / this.bucketMs;
    let peak = 0;
    for (let k = first; k <= last; k += 1) {
      const b = this.buckets.get(k);
      if (b) peak = Math.max(peak, (b.sent + b.failed) * perSecond);
    }
    const top = niceCeiling(peak);
    const plotW = width - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    this.drawGrid(ctx, top, plotW, plotH, color);
    const slot = plotW / (last - first + 1);
    const barW = Math.max(1, slot * 0.8);
    for (let k = first; k <= last; k += 1) {
      const b = this.buckets.get(k);
      if (!b) continue;
      const x = PAD.left + (k - first) * slot + (slot - barW) / 2;
      const sentH = ((b.sent * perSecond) / top) * plotH;
      const failedH = ((b.failed * perSecond) / top) * plotH;
      const base = PAD.top + plotH;
      ctx.fillStyle = color('--chart-sent', '#1a7f37');
      ctx.fillRect(x, base - sentH, barW, sentH);
      ctx.fillStyle = color('--chart-failed', '#c62828');
      ctx.fillRect(x, base - sentH - failedH, barW, failedH);
    }
    this.drawTimeAxis(ctx, first, last, plotW, color);
    const current = this.rate(5);
    const text = `Peak ${fmtRate(peak)} msg/s · last 5 s ${fmtRate(current)} msg/s`;
    this.summary.textContent = text;
    canvas.setAttribute('aria-label', `${this.label}. ${text}.`);
  }

  drawGrid(ctx, top, plotW, plotH, color) {
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    for (let i = 0; i <= 4; i += 1) {
      const value = (top / 4) * i;
      const y = PAD.top + plotH - (plotH / 4) * i;
      ctx.strokeStyle = color('--chart-grid', '#e3e6ea');
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(PAD.left, Math.round(y) + 0.5);
      ctx.lineTo(PAD.left + plotW, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillStyle = color('--chart-text', '#59636e');
      ctx.fillText(fmtRate(value), PAD.left - 6, y);
    }
  }

  drawTimeAxis(ctx, first, last, plotW, color) {
    ctx.fillStyle = color('--chart-text', '#59636e');
    ctx.textBaseline = 'top';
    const y = HEIGHT - PAD.bottom + 8;
    const fmt = (k) =>
      new Date(k * this.bucketMs - this.skewMs).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    ctx.textAlign = 'left';
    ctx.fillText(fmt(first), PAD.left, y);
    ctx.textAlign = 'right';
    ctx.fillText(fmt(last), PAD.left + plotW, y);
  }
}

/** A readable axis maximum at or above `value`: four gridline steps of 1, 2, 2.5 or 5 × 10^n. */
export function niceCeiling(value) {
  const rough = Math.max(1, value / 4);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
  return step * 4;
}
