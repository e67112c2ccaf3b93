// Messages per second over a whole run: stacked bars (sent, failed) on a <canvas>, with attempts and
// retries per second as lines when the data has them, and a strip under the bars marking every bucket
// with a failure (a few failures among thousands are too small to see as bar segments).
//
// The chart always covers the whole run, from its start to now (or to its end): when that needs more than
// MAX_BUCKETS buckets, the buckets are merged in pairs (twice as wide), so a long campaign keeps its start
// and a tab left open for days stays small. Data comes from the campaign's timeline endpoint (`seed`,
// the server's buckets of the messages' own finish times) and is extended live (`addSpan`, counts that
// arrived between two updates, spread over the time between them).
//
// Peak, everywhere: the busiest bucket of the chart, in messages finished per second. A finished campaign is
// seeded again from the timeline once it has finished, so every view of it (watched live from the start,
// opened mid-run, reloaded) shows the same buckets and the same Peak.
//
// Colours come from CSS custom properties so the stylesheet stays the one place for them.

import { fmtDuration, fmtInt, fmtRate, h, setText } from './dom.js';

const HEIGHT = 220;
const MIN_WINDOW = 30; // buckets always shown, so a young campaign's first bars are not a full-width block
const MAX_BUCKETS = 600; // beyond this the buckets are merged in pairs (see fit)
const MAX_BAR = 40; // px: a short finished run's few buckets are bars, not blocks
const STRIP = 4; // height of the failure strip under the plot
const PAD = { top: 12, right: 12, bottom: 26 + STRIP + 4, left: 48 };

export class RateChart {
  constructor({ label }) {
    this.label = label;
    this.skewMs = 0; // server time minus browser time
    this.skewBounds = null; // what the Date headers so far allow the skew to be
    this.startMs = null; // the run's start: the chart's left edge
    this.endMs = null; // the run's end: the right edge stops moving with the clock
    this.reset();
    this.canvas = h('canvas', { className: 'chart__canvas', role: 'img', 'aria-label': label });
    this.summary = h('p', { className: 'chart__summary', dataset: { role: 'chart-summary' } });
    this.legendAttempts = h('span', { className: 'legend legend--attempts', hidden: true }, 'Attempts');
    this.legendRetried = h('span', { className: 'legend legend--retried', hidden: true }, 'Retried');
    this.el = h(
      'figure',
      { className: 'chart' },
      this.canvas,
      h(
        'figcaption',
        { className: 'chart__legend' },
        h('span', { className: 'legend legend--sent' }, 'Sent'),
        h('span', { className: 'legend legend--failed' }, 'Failed'),
        this.legendAttempts,
        this.legendRetried,
        this.summary,
      ),
    );
    this.pending = false;
    // Redraw when the card changes width (window resize, phone rotation).
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.canvas);
  }

  /** Forget all data (a new run); the start and end are kept until set again. */
  reset() {
    this.bucketMs = 1000;
    this.originMs = 0; // bucket k covers [origin + k·width, origin + (k+1)·width)
    this.buckets = new Map(); // bucket index -> {sent, failed, attempts, retried}
    this.oldest = Infinity;
    this.newest = -Infinity;
    this.detailUntilMs = null; // attempts and retries are known up to here (the last seed); null: not at all
    this.detail = { attempts: false, retried: false }; // which of the two the seeded points carry
    this.seededAtMs = null; // live counts are added after this instant only (the seed holds what came before)
    this.schedule?.();
  }

  /** Stop observing (the view is going away). */
  dispose() {
    this.resizeObserver.disconnect();
  }

  /**
   * The server's clock from a response Date header, so live and seeded buckets line up. The header has whole
   * seconds: the server's time at the answer lies in [date, date + 1 s), so each answer bounds the skew, and the
   * bounds of successive answers are intersected. The estimate (the middle) then settles instead of jumping by up
   * to a second with each answer; bounds that no longer meet (a clock was set) start again.
   */
  setServerDate(dateHeader) {
    const server = Date.parse(dateHeader || '');
    if (Number.isNaN(server)) return;
    const now = Date.now();
    let [lo, hi] = [server - now, server + 1000 - now];
    if (this.skewBounds && this.skewBounds[0] < hi && lo < this.skewBounds[1]) {
      lo = Math.max(lo, this.skewBounds[0]);
      hi = Math.min(hi, this.skewBounds[1]);
    }
    this.skewBounds = [lo, hi];
    this.skewMs = (lo + hi) / 2;
  }

  now() {
    return Date.now() + this.skewMs;
  }

  key(atMs) {
    return Math.floor((atMs - this.originMs) / this.bucketMs);
  }

  timeOf(key) {
    return this.originMs + key * this.bucketMs;
  }

  /**
   * Replace the data with the timeline endpoint's points (read at server time `atMs`). Points may carry
   * `attempts` and `retried`. Returns the totals it holds, {sent, failed}: live counts continue from there.
   */
  seed(bucketSeconds, points, atMs = this.now()) {
    this.reset();
    this.bucketMs = Math.max(1, Number(bucketSeconds) || 1) * 1000;
    const list = points || [];
    const first = list.length ? Date.parse(list[0].at) : NaN;
    this.originMs = Number.isNaN(first) ? 0 : first; // the server's bins start at its first point
    const totals = { sent: 0, failed: 0 };
    for (const p of list) {
      const at = Date.parse(p.at);
      if (Number.isNaN(at)) continue;
      const extra = { attempts: Number(p.attempts) || 0, retried: Number(p.retried) || 0 };
      if (p.attempts !== undefined) this.detail.attempts = true;
      if (p.retried !== undefined) this.detail.retried = true;
      this.put(this.key(at), Number(p.sent) || 0, Number(p.failed) || 0, extra);
      totals.sent += Number(p.sent) || 0;
      totals.failed += Number(p.failed) || 0;
    }
    this.detailUntilMs = this.detail.attempts || this.detail.retried ? atMs : null;
    this.seededAtMs = atMs;
    this.fit();
    this.schedule();
    return totals;
  }

  /** Count `sent` and `failed` completions at server time `atMs` (default: now). */
  add(atMs, sent, failed) {
    if (!(sent > 0 || failed > 0)) return;
    const at = atMs ?? this.now();
    if (Number.isNaN(at)) return;
    this.put(this.key(at), sent, failed);
    this.fit();
    this.schedule();
  }

  /**
   * Count completions that happened between two updates (server times): spread evenly over that time,
   * so updates arriving in uneven steps (every 0.5 s, give or take) do not draw uneven bars. Nothing is
   * put before the last seed, which already holds what finished before it was read.
   */
  addSpan(fromMs, toMs, sent, failed) {
    if (!(sent > 0 || failed > 0) || Number.isNaN(toMs)) return;
    let from = fromMs ?? toMs;
    if (this.seededAtMs !== null) from = Math.max(from, this.seededAtMs);
    const to = Math.max(toMs, from);
    if (!(to > from)) return this.add(to, sent, failed);
    const total = to - from;
    for (let t = from; t < to; ) {
      const k = this.key(t);
      const edge = Math.min(to, this.timeOf(k + 1));
      const share = (edge - t) / total;
      this.put(k, sent * share, failed * share);
      t = edge;
    }
    this.fit();
    this.schedule();
  }

  put(key, sent, failed, extra = null) {
    const bucket = this.buckets.get(key) || { sent: 0, failed: 0, attempts: 0, retried: 0 };
    bucket.sent += sent;
    bucket.failed += failed;
    if (extra) {
      bucket.attempts += extra.attempts;
      bucket.retried += extra.retried;
    }
    this.buckets.set(key, bucket);
    if (key < this.oldest) this.oldest = key;
    if (key > this.newest) this.newest = key;
  }

  /**
   * The window of bucket indexes [first, last]: from the run's start (or the oldest data) to now, or to its end.
   * A young run is shown in at least MIN_WINDOW buckets, filling from the left; a finished one exactly.
   */
  window() {
    const lastKey = this.key(this.endMs ?? this.now());
    let first = this.startMs === null ? Infinity : this.key(this.startMs);
    if (this.oldest < first) first = this.oldest;
    if (first === Infinity) first = lastKey - MIN_WINDOW + 1; // nothing known yet: the last MIN_WINDOW buckets
    const last = Math.max(lastKey, this.newest);
    return [first, this.finished ? last : Math.max(last, first + MIN_WINDOW - 1)];
  }

  /**
   * Merge buckets in pairs until the whole run fits in MAX_BUCKETS: it always covers the run from its start,
   * and a tab left open for days keeps a few hundred buckets, not one per second for ever.
   */
  fit() {
    for (;;) {
      const [first, last] = this.window();
      if (last - first + 1 <= MAX_BUCKETS) return;
      const merged = new Map();
      for (const [k, b] of this.buckets) {
        const into = Math.floor(k / 2);
        const m = merged.get(into);
        if (m) {
          m.sent += b.sent;
          m.failed += b.failed;
          m.attempts += b.attempts;
          m.retried += b.retried;
        } else merged.set(into, { ...b });
      }
      this.buckets = merged;
      this.bucketMs *= 2;
      this.oldest = Math.floor(this.oldest / 2);
      this.newest = Math.floor(this.newest / 2);
    }
  }

  /** Stop (or with null, resume) moving the right edge with the clock: the run's end. */
  freeze(atMs) {
    const value = atMs === null || Number.isNaN(atMs) ? null : atMs;
    if (value === this.endMs) return;
    this.endMs = value;
    this.fit();
    this.schedule();
  }

  /** The run's start (a campaign's creation or due time): the chart's left edge. */
  setStart(atMs) {
    const value = atMs === null || Number.isNaN(atMs) ? null : atMs;
    if (value === this.startMs) return;
    this.startMs = value;
    this.fit();
    this.schedule();
  }

  get finished() {
    return this.endMs !== null;
  }

  /** The busiest bucket, in messages finished per second (the one definition of Peak). */
  peak() {
    let most = 0;
    for (const b of this.buckets.values()) most = Math.max(most, b.sent + b.failed);
    return most / (this.bucketMs / 1000);
  }

  totals() {
    const t = { sent: 0, failed: 0, attempts: 0, retried: 0 };
    for (const b of this.buckets.values()) {
      t.sent += b.sent;
      t.failed += b.failed;
      t.attempts += b.attempts;
      t.retried += b.retried;
    }
    return t;
  }

  /** Messages finished per second over the whole run: everything, over start to end (or now). */
  average() {
    const t = this.totals();
    const start = this.startMs ?? (this.oldest === Infinity ? null : this.timeOf(this.oldest));
    if (start === null) return 0;
    const seconds = ((this.endMs ?? this.now()) - start) / 1000;
    return seconds > 0 ? (t.sent + t.failed) / seconds : 0;
  }

  /**
   * Average messages/s over the last `seconds` (at least one bucket), ignoring the bucket still filling.
   * When the activity began inside that window, only the time since then counts (a campaign 3 s old
   * sending 80/s is at 80/s, not 24/s).
   */
  rate(seconds = 10) {
    const last = this.key(this.endMs ?? this.now()) - 1;
    const n = this.rateBuckets(seconds);
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
    const span = this.oldest < first ? n : last - first + 1;
    return total / ((span * this.bucketMs) / 1000);
  }

  rateBuckets(seconds) {
    return Math.max(1, Math.round((seconds * 1000) / this.bucketMs));
  }

  /** Redraw at most once per frame, however many updates arrive. */
  schedule() {
    if (this.pending || !this.canvas) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  /** The line under the chart: Peak, and the current rate while running or the run's average once it is over. */
  summaryText() {
    const bucket = spanText(this.bucketMs / 1000);
    const peak = `Peak ${fmtRate(this.peak())} msg/s (busiest ${bucket})`;
    if (this.finished) {
      const t = this.totals();
      const retried = this.detail.retried ? ` · ${fmtInt(t.retried)} retried` : '';
      return `${peak} · average ${fmtRate(this.average())} msg/s${retried}`;
    }
    const seconds = (this.rateBuckets(5) * this.bucketMs) / 1000;
    return `${peak} · last ${spanText(seconds)} ${fmtRate(this.rate(5))} msg/s`;
  }

  draw() {
    const { canvas } = this;
    this.fit(); // the clock moved on: the run may need wider buckets
    const text = this.summaryText();
    setText(this.summary, text);
    Object.assign(this.summary.dataset, {
      peak: String(this.peak()),
      average: String(this.average()),
      bucketSeconds: String(this.bucketMs / 1000),
      state: this.finished ? 'finished' : 'running',
    });
    canvas.setAttribute('aria-label', `${this.label}. ${text}.`);
    const detail = this.detailUntilMs !== null;
    this.legendAttempts.hidden = !this.detail.attempts;
    this.legendRetried.hidden = !this.detail.retried;
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
    let top = this.peak();
    const detailLast = detail ? this.key(this.detailUntilMs) : -Infinity;
    if (detail) for (const b of this.buckets.values()) top = Math.max(top, b.attempts * perSecond, b.retried * perSecond);
    top = niceCeiling(top);
    const plotW = width - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const base = PAD.top + plotH;
    this.drawGrid(ctx, top, plotW, plotH, color);
    const slot = plotW / (last - first + 1);
    const barW = Math.min(MAX_BAR, Math.max(1, slot * 0.8));
    const x = (k) => PAD.left + (k - first) * slot + (slot - barW) / 2;
    for (const [k, b] of this.buckets) {
      if (k < first || k > last) continue;
      const sentH = ((b.sent * perSecond) / top) * plotH;
      const failedH = ((b.failed * perSecond) / top) * plotH;
      ctx.fillStyle = color('--chart-sent', '#1a7f37');
      ctx.fillRect(x(k), base - sentH, barW, sentH);
      ctx.fillStyle = color('--chart-failed', '#c62828');
      ctx.fillRect(x(k), base - sentH - failedH, barW, failedH);
      if (b.failed > 0) ctx.fillRect(x(k), base + 3, Math.max(2, barW), STRIP); // the failure strip
    }
    if (detail) {
      const until = Math.min(last, detailLast);
      if (this.detail.attempts) this.drawLine(ctx, first, until, 'attempts', { x, barW, top, plotH, base, perSecond, stroke: color('--chart-attempts', '#1f5fbf'), dash: [] });
      if (this.detail.retried) this.drawLine(ctx, first, until, 'retried', { x, barW, top, plotH, base, perSecond, stroke: color('--chart-retried', '#b25e00'), dash: [4, 3] });
    }
    this.drawTimeAxis(ctx, first, last, plotW, color);
  }

  /** A series as a line through the middle of each bucket (zero where a bucket has none). */
  drawLine(ctx, first, last, field, { x, barW, top, plotH, base, perSecond, stroke, dash }) {
    const from = Math.max(first, this.oldest);
    if (!(last >= from)) return;
    ctx.save();
    ctx.strokeStyle = stroke;
    ctx.lineWidth = 2;
    ctx.setLineDash(dash);
    ctx.lineJoin = 'round';
    ctx.beginPath();
    for (let k = from; k <= last; k += 1) {
      const value = (this.buckets.get(k)?.[field] || 0) * perSecond;
      const px = x(k) + barW / 2;
      const py = base - (value / top) * plotH;
      if (k === from) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    }
    ctx.stroke();
    ctx.restore();
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
    const y = HEIGHT - PAD.bottom + STRIP + 10;
    const fmt = (k) =>
      new Date(this.timeOf(k) - this.skewMs).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    ctx.textAlign = 'left';
    ctx.fillText(fmt(first), PAD.left, y);
    ctx.textAlign = 'right';
    ctx.fillText(fmt(last + 1), PAD.left + plotW, y);
    if (plotW > 480) {
      ctx.textAlign = 'center';
      ctx.fillText(fmt(Math.round((first + last + 1) / 2)), PAD.left + plotW / 2, y);
    }
  }
}

/** A bucket's width in words: "1 s", "10 s", "1 min", "2 min 08 s". */
function spanText(seconds) {
  return seconds >= 60 && seconds < 3600 && seconds % 60 === 0 ? `${seconds / 60} min` : fmtDuration(seconds);
}

/** A readable axis maximum at or above `value`: four gridline steps of 1, 2, 2.5 or 5 × 10^n. */
export function niceCeiling(value) {
  const rough = Math.max(1, value / 4);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
  return step * 4;
}
