// #/workers: every live worker (rate, in flight, totals) and the queue, from GET /workers
// every 1.5 s. Polling (not a stream) is enough here: the numbers are snapshots anyway.

import { api } from './api.js';
import { MessageArea, pageHeading, setStat, stat, table } from './components.js';
import { fmtAgo, fmtDuration, fmtInt, fmtRate, h, isAbort, replace, setText, sleep } from './dom.js';

const REFRESH_MS = 1500;
const STALE_SECONDS = 10; // a heartbeat older than this is flagged: the worker may be gone

export function renderWorkers(container, { signal }) {
  const messages = new MessageArea('workers-message');
  const updated = h('span', { className: 'muted', id: 'workers-updated', 'aria-live': 'off' });
  const figures = {
    workers: stat('Live workers', 'workers'),
    rate: stat('Messages per second', 'rate'),
    inFlight: stat('In flight', 'in-flight'),
    queued: stat('Queued messages', 'queued-messages'),
    scheduled: stat('Scheduled messages', 'scheduled-messages'),
    bulkJobs: stat('Bulk jobs waiting', 'bulk-jobs'),
    transactionalJobs: stat('Transactional jobs waiting', 'transactional-jobs'),
  };
  const list = table('Workers', ['Worker', 'Host', 'PID', 'Rate /s', 'In flight', 'Sent', 'Failed', 'Retried', 'Up for', 'Last seen'], {
    id: 'workers-table',
    numeric: [2, 3, 4, 5, 6, 7],
  });
  const empty = h('p', { className: 'empty muted', hidden: true, id: 'workers-empty' }, 'No live workers. Start one with `notifq worker` (or `make scale WORKERS=2`).');
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('Workers'), updated),
    messages.el,
    h('section', { className: 'card', 'aria-label': 'Totals' }, h('dl', { className: 'stats', id: 'workers-stats' }, Object.values(figures).map((s) => s.el))),
    h('section', { className: 'card card--flush', 'aria-label': 'Worker list' }, list.wrap, empty),
  );

  function render(data) {
    const workers = data.workers || [];
    const queue = data.queue || {};
    setStat(figures.workers, workers.length);
    const totalRate = workers.reduce((sum, w) => sum + (Number(w.ratePerSecond) || 0), 0);
    setStat(figures.rate, Math.round(totalRate));
    setText(figures.rate.value, fmtRate(totalRate));
    setStat(figures.inFlight, data.inFlight ?? workers.reduce((sum, w) => sum + (w.inFlight || 0), 0));
    setStat(figures.queued, queue.queuedMessages || 0);
    setStat(figures.scheduled, queue.scheduledMessages || 0);
    setStat(figures.bulkJobs, queue.bulkJobs || 0);
    setStat(figures.transactionalJobs, queue.transactionalJobs || 0);
    replace(list.body, workers.map(workerRow));
    empty.hidden = workers.length > 0;
    list.wrap.hidden = workers.length === 0;
    setText(updated, `Updated ${new Date().toLocaleTimeString()}`);
  }

  (async () => {
    while (!signal.aborted) {
      try {
        render(await api('/workers', { signal }));
        messages.clear();
      } catch (error) {
        if (isAbort(error) || error.status === 401) return;
        const text = error.status === 404 ? 'This server does not report workers (GET /workers is missing).' : `Could not load workers: ${error.message}`;
        messages.show('error', text);
      }
      await sleep(REFRESH_MS, signal);
    }
  })().catch((error) => {
    if (!isAbort(error)) messages.show('error', error.message);
  });
}

function workerRow(w) {
  const now = Date.now();
  const age = (now - Date.parse(w.lastSeen)) / 1000;
  const stale = age > STALE_SECONDS;
  return h(
    'tr',
    { dataset: { workerId: w.id }, className: stale ? 'row--stale' : null },
    h('td', { className: 'mono cell-wrap' }, w.id),
    h('td', { className: 'cell-wrap' }, w.host || '—'),
    h('td', { className: 'num' }, w.pid ?? '—'),
    h('td', { className: 'num', dataset: { role: 'rate' } }, fmtRate(w.ratePerSecond)),
    h('td', { className: 'num', dataset: { role: 'in-flight' } }, fmtInt(w.inFlight)),
    h('td', { className: 'num' }, fmtInt(w.sent)),
    h('td', { className: 'num' }, fmtInt(w.failed)),
    h('td', { className: 'num' }, fmtInt(w.retried)),
    h('td', { className: 'nowrap' }, w.startedAt ? fmtDuration((now - Date.parse(w.startedAt)) / 1000) : '—'),
    h('td', { className: 'nowrap' }, stale ? `${fmtAgo(w.lastSeen, now)} (stale)` : fmtAgo(w.lastSeen, now)),
  );
}
