// What both charts (chart.js: a run's rates; linechart.js: series over time) do to a <canvas> alike:
// size it for the screen's pixel ratio, read colours from CSS custom properties (the stylesheet stays
// the one place for them), pick a readable axis maximum and draw the value grid.

import { fmtRate } from './dom.js';

/**
 * Size `canvas` for its CSS width × `height` at the device's pixel ratio and clear it.
 * Returns `{ctx, width, color}` (`color(name, fallback)` reads a custom property), or null when the
 * canvas is not laid out (not in the document yet).
 */
export function prepareCanvas(canvas, height) {
  const width = canvas.clientWidth;
  if (!width) return null;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const css = getComputedStyle(canvas);
  const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return { ctx, width, color };
}

/** A readable axis maximum at or above `value`: four gridline steps of 1, 2, 2.5 or 5 × 10^n. */
export function niceCeiling(value) {
  const rough = Math.max(1, value / 4);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
  return step * 4;
}

/** Five horizontal gridlines from 0 to `top`, labelled on the left of the plot area. */
export function drawGrid(ctx, { pad, top, plotW, plotH, color }) {
  ctx.font = '12px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  for (let i = 0; i <= 4; i += 1) {
    const y = pad.top + plotH - (plotH / 4) * i;
    ctx.strokeStyle = color('--chart-grid', '#e3e6ea');
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(pad.left, Math.round(y) + 0.5);
    ctx.lineTo(pad.left + plotW, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.fillStyle = color('--chart-text', '#59636e');
    ctx.fillText(fmtRate((top / 4) * i), pad.left - 6, y);
  }
}
