// #/overview: the whole system at a glance, refreshed every 10 s.
//  - totals by status and by channel, and sent / failed / retried per second over the last hour
//    (GET /overview?minutes=60; a server without it falls back to GET /stats for the totals);
//  - each provider's outcomes, error rate and latency percentiles (GET /providers).
// A server without one of the endpoints shows what it has, and says which figures it does not report.

import { request } from './api.js';
import { MESSAGE_STATUS_LABELS, MessageArea, cardRow, pageHeading, setStat, stat, table } from './components.js';
import { RateChart } from './chart.js';
import { fmtInt, h, isAbort, replace, setText, sleep } from './dom.js';

const REFRESH_MS = 10_000;
const MINUTES = 60;
const STATUSES = Object.keys(MESSAGE_STATUS_LABELS);
const ERROR_RATE_WARN = 0.05; // an error rate above 5 % is flagged

export function renderOverview(container, { signal }) {
  const messages = new MessageArea('overview-message');
  const updated = h('span', { className: 'muted', id: 'overview-updated', 'aria-live': 'off' });
  const figures = Object.fromEntries(STATUSES.map((s) => [s, stat(MESSAGE_STATUS_LABELS[s], s)]));
  const chart = new RateChart({ label: 'Messages sent, failed and retried per second, last hour' });
  const chartNote = h('p', { className: 'muted', id: 'overview-chart-note', hidden: true });
  const byChannel = table('Messages by channel and status', ['Channel', ...STATUSES.map((s) => MESSAGE_STATUS_LABELS[s])], {
    id: 'overview-channels',
    numeric: [1, 2, 3, 4, 5, 6],
    cards: true,
  });
  const providers = table(
    'Providers',
    ['Provider', 'Sent', 'Failed', 'Retried', 'Throttled', 'Deferred', 'Error rate', 'p50', 'p95', 'p99'],
    { id: 'providers-table', numeric: [1, 2, 3, 4, 5, 6, 7, 8, 9], cards: true },
  );
  const providersNote = h('p', { className: 'muted empty', id: 'providers-note', hidden: true });
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('Overview'), updated),
    messages.el,
    h('section', { className: 'card', 'aria-label': 'Messages by status' }, h('dl', { className: 'stats', id: 'overview-stats' }, Object.values(figures).map((s) => s.el))),
    h(
      'section',
      { className: 'card', 'aria-labelledby': 'overview-chart-title' },
      h('h2', { id: 'overview-chart-title' }, 'Sent, failed and retried per second, last hour'),
      chart.el,
      chartNote,
    ),
    h('section', { className: 'card', 'aria-labelledby': 'overview-channels-title' }, h('h2', { id: 'overview-channels-title' }, 'By channel and status'), byChannel.wrap),
    h(
      'section',
      { className: 'card', 'aria-labelledby': 'providers-title', id: 'providers-section' },
      h('h2', { id: 'providers-title' }, 'Providers'),
      h(
        'p',
        { className: 'muted' },
        'Every delivery attempt per provider since the counters began. Error rate: the attempts that failed or had to be retried, of all attempts. p50, p95, p99: how long the provider took to answer.',
      ),
      providers.wrap,
      providersNote,
    ),
  );
  signal.addEventListener('abort', () => chart.dispose(), { once: true });

  let overviewAvailable = true;
  let providersAvailable = true;

  function renderTotals(byStatus, channels) {
    for (const s of STATUSES) setStat(figures[s], byStatus[s] || 0);
    const names = Object.keys(channels).sort();
    replace(
      byChannel.body,
      names.length
        ? names.map((channel) =>
            cardRow({ dataset: { channel } }, [
              h('th', { scope: 'row', className: 'cell-full' }, channel),
              ...STATUSES.map((s) => h('td', { className: 'num', 'data-label': MESSAGE_STATUS_LABELS[s] }, fmtInt(channels[channel][s] || 0))),
            ]),
          )
        : cardRow({}, [h('td', { colspan: String(STATUSES.length + 1), className: 'muted cell-full' }, 'No messages yet.')]),
    );
  }

  async function loadOverview() {
    if (overviewAvailable) {
      try {
        const { data, response } = await request(`/overview?minutes=${MINUTES}`, { signal });
        chart.setServerDate(response.headers.get('Date'));
        renderTotals(data.totals?.byStatus || {}, data.totals?.byChannel || {});
        chart.setStart(chart.now() - MINUTES * 60_000);
        chart.seed(data.bucketSeconds, data.points || []);
        chartNote.hidden = true;
        return;
      } catch (error) {
        if (isAbort(error) || error.status === 401) throw error;
        if (error.status !== 404 && error.status !== 405) throw error;
        overviewAvailable = false;
      }
    }
    // An older server: the totals from /stats, no history.
    const { data } = await request('/stats', { signal });
    renderTotals(data.byStatus || {}, data.byChannel || {});
    chart.setStart(chart.now() - MINUTES * 60_000);
    chartNote.hidden = false;
    setText(chartNote, 'This server keeps no history (GET /overview is missing): the chart stays empty.');
  }

  async function loadProviders() {
    if (!providersAvailable) return;
    try {
      const { data } = await request('/providers', { signal });
      const items = data.items || [];
      replace(providers.body, items.map(providerRow));
      providers.wrap.hidden = items.length === 0;
      providersNote.hidden = items.length > 0;
      setText(providersNote, 'No data yet: no provider has been tried since the workers started.');
    } catch (error) {
      if (isAbort(error) || error.status === 401) throw error;
      if (error.status !== 404 && error.status !== 405) throw error;
      providersAvailable = false;
      providers.wrap.hidden = true;
      providersNote.hidden = false;
      setText(providersNote, 'No data: this server does not report per-provider figures (GET /providers is missing).');
    }
  }

  (async () => {
    while (!signal.aborted) {
      const results = await Promise.allSettled([loadOverview(), loadProviders()]);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed && (isAbort(failed.reason) || failed.reason?.status === 401)) return;
      if (failed) messages.show('error', `Could not refresh: ${failed.reason.message}`);
      else messages.clear();
      setText(updated, `Updated ${new Date().toLocaleTimeString()}`);
      await sleep(REFRESH_MS, signal);
    }
  })().catch((error) => {
    if (!isAbort(error)) messages.show('error', error.message);
  });
}

function providerRow(p) {
  const latency = p.latency || {};
  const rate = Number(p.errorRate) || 0;
  const cells = [
    h('th', { scope: 'row', className: 'cell-full' }, p.provider, h('span', { className: 'muted' }, ` · ${p.channel}`)),
    h('td', { className: 'num', 'data-label': 'Sent' }, fmtInt(p.sent)),
    h('td', { className: 'num', 'data-label': 'Failed' }, fmtInt(p.failed)),
    h('td', { className: 'num', 'data-label': 'Retried' }, fmtInt(p.retried)),
    h('td', { className: 'num', 'data-label': 'Throttled' }, fmtInt(p.throttled)),
    h('td', { className: 'num', 'data-label': 'Deferred' }, fmtInt(p.deferred)),
    h('td', { className: `num${rate > ERROR_RATE_WARN ? ' cell-warn' : ''}`, 'data-label': 'Error rate', dataset: { field: 'error-rate' } }, fmtPercent(rate)),
    h('td', { className: 'num', 'data-label': 'p50', dataset: { field: 'p50' } }, fmtLatency(latency.p50Seconds, latency.count)),
    h('td', { className: 'num', 'data-label': 'p95', dataset: { field: 'p95' } }, fmtLatency(latency.p95Seconds, latency.count)),
    h('td', { className: 'num', 'data-label': 'p99', dataset: { field: 'p99' } }, fmtLatency(latency.p99Seconds, latency.count)),
  ];
  return cardRow({ dataset: { provider: `${p.channel}/${p.provider}` } }, cells);
}

/** 0.034 -> "3.4 %"; a share below 0.1 % that is not zero shows as "<0.1 %". */
export function fmtPercent(share) {
  const pct = share * 100;
  if (pct > 0 && pct < 0.1) return '<0.1 %';
  return `${pct.toFixed(pct >= 10 ? 0 : 1)} %`;
}

/** Seconds as "12 ms" or "1.25 s"; an em dash without measurements. */
export function fmtLatency(seconds, count = 1) {
  if (seconds === null || seconds === undefined || !count) return '—';
  const s = Number(seconds);
  if (s < 0.001) return '<1 ms';
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`;
}
