// Several series over the same time range as lines on a <canvas> (the Workers page: each worker's rate over
// the last hour). The legend is HTML (names are user-visible text, set as Text nodes), and the figure's
// label says in words what the lines show, for readers who cannot see them.

import { drawGrid, niceCeiling, prepareCanvas } from './canvas.js';
import { fmtRate, h, replace } from './dom.js';

const HEIGHT = 200;
const PAD = { top: 12, right: 12, bottom: 26, left: 48 };
const PALETTE = 8; // --series-1 … --series-8 in app.css; beyond that the colours repeat, with dashes

export class LineChart {
  /** `unit` names the values in the label ("msg/s"). */
  constructor({ label, unit }) {
    this.label = label;
    this.unit = unit;
    this.series = []; // [{name, points: [{at (ms), value}], muted}]
    this.fromMs = 0;
    this.toMs = 0;
    this.skewMs = 0;
    this.canvas = h('canvas', { className: 'chart__canvas chart__canvas--short', role: 'img', 'aria-label': label });
    this.legend = h('ul', { className: 'series-legend', dataset: { role: 'series-legend' } });
    this.el = h('figure', { className: 'chart' }, this.canvas, h('figcaption', {}, this.legend));
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.canvas);
  }

  dispose() {
    this.resizeObserver.disconnect();
  }

  /** Show `series` over [fromMs, toMs] (server times; `skewMs` turns them into the browser's for the axis). */
  set(series, fromMs, toMs, skewMs = 0) {
    this.series = series;
    this.fromMs = fromMs;
    this.toMs = toMs;
    this.skewMs = skewMs;
    replace(
      this.legend,
      series.map((s, i) =>
        h(
          'li',
          { className: `series-legend__item series-${(i % PALETTE) + 1}${i >= PALETTE ? ' series--dashed' : ''}${s.muted ? ' series--muted' : ''}` },
          h('span', { className: 'series-legend__swatch', 'aria-hidden': 'true' }),
          h('span', { className: 'series-legend__name', title: s.name }, s.name),
          s.note ? h('span', { className: 'muted' }, ` ${s.note}`) : null,
        ),
      ),
    );
    const words = series.map((s) => `${s.name}: peak ${fmtRate(Math.max(0, ...s.points.map((p) => p.value)))} ${this.unit}`).join('; ');
    this.canvas.setAttribute('aria-label', `${this.label}. ${words || 'No data.'}`);
    this.draw();
  }

  draw() {
    const prepared = prepareCanvas(this.canvas, HEIGHT);
    if (!prepared) return;
    const { ctx, width, color } = prepared;
    let most = 0;
    for (const s of this.series) for (const p of s.points) most = Math.max(most, p.value);
    const top = niceCeiling(most);
    const plotW = width - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    drawGrid(ctx, { pad: PAD, top, plotW, plotH, color });
    const span = Math.max(1, this.toMs - this.fromMs);
    const x = (at) => PAD.left + ((at - this.fromMs) / span) * plotW;
    const y = (value) => PAD.top + plotH - (value / top) * plotH;
    this.series.forEach((s, i) => {
      if (!s.points.length) return;
      ctx.save();
      ctx.strokeStyle = color(`--series-${(i % PALETTE) + 1}`, '#1f5fbf');
      ctx.globalAlpha = s.muted ? 0.45 : 1;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.setLineDash(i >= PALETTE ? [5, 3] : []);
      ctx.beginPath();
      s.points.forEach((p, j) => (j === 0 ? ctx.moveTo(x(p.at), y(p.value)) : ctx.lineTo(x(p.at), y(p.value))));
      ctx.stroke();
      if (s.points.length === 1) {
        ctx.fillStyle = ctx.strokeStyle;
        ctx.fillRect(x(s.points[0].at) - 2, y(s.points[0].value) - 2, 4, 4);
      }
      ctx.restore();
    });
    ctx.fillStyle = color('--chart-text', '#59636e');
    ctx.textBaseline = 'top';
    const fmt = (at) => new Date(at - this.skewMs).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    const ty = HEIGHT - PAD.bottom + 8;
    ctx.textAlign = 'left';
    ctx.fillText(fmt(this.fromMs), PAD.left, ty);
    ctx.textAlign = 'right';
    ctx.fillText(fmt(this.toMs), PAD.left + plotW, ty);
    if (plotW > 420) {
      ctx.textAlign = 'center';
      ctx.fillText(fmt((this.fromMs + this.toMs) / 2), PAD.left + plotW / 2, ty);
    }
  }
}
