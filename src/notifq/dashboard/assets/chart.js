// Messages per second over a whole run (the data and its figures: rates.js) drawn on a <canvas>: stacked bars
// (sent, failed), attempts and retries per second as lines when the data has them, and a strip under the bars
// marking every bucket with a failure (a few failures among thousands are too small to see as bar segments).
//
// Colours come from CSS custom properties so the stylesheet stays the one place for them.

import { drawGrid, niceCeiling, prepareCanvas } from './canvas.js';
import { fmtDuration, fmtInt, fmtRate, h, setText } from './dom.js';
import { RateBuckets } from './rates.js';

const HEIGHT = 220;
const MAX_BAR = 40; // px: a short finished run's few buckets are bars, not blocks
const STRIP = 4; // height of the failure strip under the plot
const PAD = { top: 12, right: 12, bottom: 26 + STRIP + 4, left: 48 };

export class RateChart extends RateBuckets {
  constructor({ label }) {
    super();
    this.label = label;
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

  /** Stop observing (the view is going away). */
  dispose() {
    this.resizeObserver.disconnect();
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
      // With its length: a run shorter than a bucket averages more than its busiest bucket holds.
      return `${peak} · average ${fmtRate(this.average())} msg/s over ${fmtDuration(this.runSeconds(), { precise: true })}${retried}`;
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
    const prepared = prepareCanvas(canvas, HEIGHT);
    if (!prepared) return; // not in the document (yet)
    const { ctx, width, color } = prepared;
    const [first, last] = this.window();
    const perSecond = 1000 / this.bucketMs;
    let top = this.peak();
    const detailLast = detail ? this.key(this.detailUntilMs) : -Infinity;
    if (detail) for (const b of this.buckets.values()) top = Math.max(top, b.attempts * perSecond, b.retried * perSecond);
    top = niceCeiling(top);
    const plotW = width - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const base = PAD.top + plotH;
    drawGrid(ctx, { pad: PAD, top, plotW, plotH, color });
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
