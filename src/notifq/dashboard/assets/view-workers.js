// #/workers: every live worker (rate, in flight, totals) and the queue, from GET /workers
// every 1.5 s. Polling (not a stream) is enough here: the numbers are snapshots anyway.
// Above the list, each worker's rate over the last hour (GET /workers/history?minutes=60, every 15 s),
// workers that have stopped included, so a worker that died or slowed down a while ago is still seen.
// Rows are keyed by worker id and updated in place: rebuilding the table every 1.5 s would
// lose a text selection, keyboard focus and the table's scroll position each time.

import { api, request } from './api.js';
import { LineChart } from './linechart.js';
import { MessageArea, cardRow, pageHeading, setStat, stat, table } from './components.js';
import { fmtAgo, fmtDuration, fmtInt, fmtRate, h, isAbort, setText, sleep } from './dom.js';

const REFRESH_MS = 1500;
const STALE_SECONDS = 10; // a heartbeat older than this is flagged: the worker may be gone
const HISTORY_MINUTES = 60;
const HISTORY_REFRESH_MS = 15_000;

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
    cards: true, // rows become cards on phones: ten columns do not fit 390 px
  });
  const empty = h('p', { className: 'empty muted', hidden: true, id: 'workers-empty' }, 'No live workers. Start one with `notifq worker` (or `make scale WORKERS=2`).');
  const history = new LineChart({ label: 'Messages per second of each worker, last hour', unit: 'msg/s' });
  const historyNote = h('p', { className: 'muted', id: 'workers-history-note', hidden: true });
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('Workers'), updated),
    messages.el,
    h('section', { className: 'card', 'aria-label': 'Totals' }, h('dl', { className: 'stats', id: 'workers-stats' }, Object.values(figures).map((s) => s.el))),
    h(
      'section',
      { className: 'card', 'aria-labelledby': 'workers-history-title', id: 'workers-history' },
      h('h2', { id: 'workers-history-title' }, 'Messages per second, last hour'),
      history.el,
      historyNote,
    ),
    h('section', { className: 'card card--flush', 'aria-label': 'Worker list' }, list.wrap, empty),
  );
  signal.addEventListener('abort', () => history.dispose(), { once: true });

  const rows = new Map(); // worker id -> {tr, cells}

  /** Make the table's rows the given workers, in the API's order, reusing each worker's row. */
  function renderRows(workers) {
    const now = Date.now();
    const seen = new Set();
    workers.forEach((w, i) => {
      const id = String(w.id);
      seen.add(id);
      let row = rows.get(id);
      if (!row) {
        row = workerRow(id);
        rows.set(id, row);
      }
      updateWorkerRow(row, w, now);
      // Moved only when out of place: re-inserting a row that is already there would still drop focus in it.
      if (list.body.children[i] !== row.tr) list.body.insertBefore(row.tr, list.body.children[i] || null);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
  }

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
    renderRows(workers);
    empty.hidden = workers.length > 0;
    list.wrap.hidden = workers.length === 0;
    setText(updated, `Updated ${new Date().toLocaleTimeString()}`);
  }

  /** The last hour of every worker (stopped ones faded); false when the server has no history. */
  async function loadHistory() {
    let answer;
    try {
      answer = await request(`/workers/history?minutes=${HISTORY_MINUTES}`, { signal });
    } catch (error) {
      if (isAbort(error) || error.status === 401) throw error;
      historyNote.hidden = false;
      if (error.status === 404 || error.status === 405) {
        setText(historyNote, 'No history: this server does not keep workers’ rates (GET /workers/history is missing).');
        return false;
      }
      setText(historyNote, `Could not load the history: ${error.message}`);
      return true;
    }
    const { data, response } = answer;
    const serverNow = Date.parse(response.headers.get('Date') || '') || Date.now();
    const skew = serverNow - Date.now();
    const series = (data.workers || []).map((w) => ({
      name: String(w.id),
      note: w.live ? null : '(stopped)',
      muted: !w.live,
      points: (w.points || []).map((p) => ({ at: Date.parse(p.at), value: Number(p.ratePerSecond) || 0 })).filter((p) => !Number.isNaN(p.at)),
    }));
    history.set(series, serverNow - HISTORY_MINUTES * 60_000, serverNow, skew);
    historyNote.hidden = series.length > 0;
    setText(historyNote, 'No worker has run in the last hour.');
    return true;
  }

  (async () => {
    let more = true;
    while (more && !signal.aborted) {
      more = await loadHistory();
      await sleep(HISTORY_REFRESH_MS, signal);
    }
  })().catch(() => {});

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

/** A worker's row, empty: `updateWorkerRow` fills it. data-label names each value when a phone shows it as a card. */
function workerRow(id) {
  const cell = (label, className, role) => h('td', { className, 'data-label': label, dataset: role ? { role } : null });
  const cells = {
    id: h('td', { className: 'mono cell-full cell-worker', title: id }, id),
    host: cell('Host', 'cell-wrap cell-two'),
    pid: cell('PID', 'num'),
    rate: cell('Rate /s', 'num', 'rate'),
    inFlight: cell('In flight', 'num', 'in-flight'),
    sent: cell('Sent', 'num'),
    failed: cell('Failed', 'num'),
    retried: cell('Retried', 'num'),
    up: cell('Up for', 'nowrap'),
    seen: cell('Last seen', 'nowrap cell-two'),
  };
  return { tr: cardRow({ dataset: { workerId: id } }, Object.values(cells)), cells };
}

/** Set a row's cells (text only changes where it differs, see setText). */
function updateWorkerRow({ tr, cells }, w, now) {
  const age = (now - Date.parse(w.lastSeen)) / 1000;
  const stale = age > STALE_SECONDS;
  tr.classList.toggle('row--stale', stale);
  setText(cells.host, w.host || '—');
  setText(cells.pid, w.pid ?? '—');
  setText(cells.rate, fmtRate(w.ratePerSecond));
  setText(cells.inFlight, fmtInt(w.inFlight));
  setText(cells.sent, fmtInt(w.sent));
  setText(cells.failed, fmtInt(w.failed));
  setText(cells.retried, fmtInt(w.retried));
  setText(cells.up, w.startedAt ? fmtDuration((now - Date.parse(w.startedAt)) / 1000) : '—');
  setText(cells.seen, stale ? `${fmtAgo(w.lastSeen, now)} (stale)` : fmtAgo(w.lastSeen, now));
}
