// #/workers: every live worker (rate, in flight, totals) and the queue, from GET /workers
// every 1.5 s. Polling (not a stream) is enough here: the numbers are snapshots anyway.
// Above the list, each worker's rate over the last hour (GET /workers/history?minutes=60, every 15 s),
// workers that have stopped included, so a worker that died or slowed down a while ago is still seen.
// Rows are keyed by worker id and updated in place: rebuilding the table every 1.5 s would
// lose a text selection, keyboard focus and the table's scroll position each time.
// Below the totals, from the same answer: the fleet-wide provider limits (NOTIFQ_PROVIDER_RATES:
// configured, enforced after back-off, measured, held) and, when a channel lists several
// providers, where its messages go now (failover). Both cards stay hidden when there is nothing to show.

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
  const limits = table('Fleet-wide provider limits', ['Provider', 'Limit /s', 'Enforced /s', 'Sending /s', 'State'], {
    id: 'provider-limits-table',
    numeric: [1, 2, 3],
    cards: true,
  });
  const limitsCard = h(
    'section',
    { className: 'card card--flush', 'aria-labelledby': 'provider-limits-title', id: 'provider-limits', hidden: true },
    h('div', { className: 'card__header card__header--pad' }, h('h2', { id: 'provider-limits-title' }, 'Provider limits, whole fleet')),
    limits.wrap,
  );
  const routes = table('Providers per channel', ['Channel', 'Providers, in order', 'Sending through'], { id: 'provider-routes-table', cards: true });
  const routesCard = h(
    'section',
    { className: 'card card--flush', 'aria-labelledby': 'provider-routes-title', id: 'provider-routes', hidden: true },
    h('div', { className: 'card__header card__header--pad' }, h('h2', { id: 'provider-routes-title' }, 'Failover')),
    routes.wrap,
  );
  const history = new LineChart({ label: 'Messages per second of each worker, last hour', unit: 'msg/s' });
  const historyNote = h('p', { className: 'muted', id: 'workers-history-note', hidden: true });
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('Workers'), updated),
    messages.el,
    h('section', { className: 'card', 'aria-label': 'Totals' }, h('dl', { className: 'stats', id: 'workers-stats' }, Object.values(figures).map((s) => s.el))),
    limitsCard,
    routesCard,
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
  const limitRows = new Map(); // provider -> {tr, cells}
  const routeRows = new Map(); // channel -> {tr, cells}

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
    const providerLimits = data.providerLimits || [];
    keyedRows(limits.body, limitRows, providerLimits, (l) => l.provider, limitRow, updateLimitRow);
    limitsCard.hidden = providerLimits.length === 0;
    // Only channels with a choice: one provider has nothing to fail over to.
    const choices = (data.providerRoutes || []).filter((r) => (r.providers || []).length > 1);
    keyedRows(routes.body, routeRows, choices, (r) => r.channel, routeRow, updateRouteRow);
    routesCard.hidden = choices.length === 0;
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

/** Make `body`'s rows the given items, in order, reusing the row of each key (as renderRows does for workers). */
function keyedRows(body, rows, items, keyOf, make, update) {
  const seen = new Set();
  items.forEach((item, i) => {
    const key = String(keyOf(item));
    seen.add(key);
    let row = rows.get(key);
    if (!row) {
      row = make(key);
      rows.set(key, row);
    }
    update(row, item);
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
  });
  for (const [key, row] of rows) {
    if (!seen.has(key)) {
      row.tr.remove();
      rows.delete(key);
    }
  }
}

/** A fleet-limited provider's row. */
function limitRow(provider) {
  const cell = (label, className, role) => h('td', { className, 'data-label': label, dataset: role ? { role } : null });
  const state = h('span', { className: 'badge' });
  const cells = {
    provider: h('th', { scope: 'row', className: 'mono cell-full' }, provider),
    limit: cell('Limit /s', 'num', 'limit'),
    effective: cell('Enforced /s', 'num', 'effective'),
    current: cell('Sending /s', 'num', 'current'),
    state: h('td', { 'data-label': 'State', dataset: { role: 'state' } }, state),
  };
  return { tr: cardRow({ dataset: { provider } }, Object.values(cells)), cells, state };
}

/** Held (a Retry-After for the whole fleet), backed off (a throttling answer halved the rate, climbing back), or at its limit. */
function updateLimitRow({ tr, cells, state }, l) {
  const limit = Number(l.limitPerSecond) || 0;
  const effective = Number(l.effectivePerSecond) || 0;
  const held = l.heldUntil ? Date.parse(l.heldUntil) > Date.now() : false;
  const kind = held ? 'held' : effective < limit ? 'backed_off' : 'ok';
  tr.dataset.state = kind;
  setText(cells.limit, fmtRate(limit));
  setText(cells.effective, fmtRate(effective));
  setText(cells.current, fmtRate(l.currentPerSecond));
  state.className = `badge badge--limit-${kind}`;
  const text = {
    held: `Held until ${new Date(l.heldUntil).toLocaleTimeString()}`,
    backed_off: `Backed off to ${Math.round((100 * effective) / (limit || 1))} %`,
    ok: 'At its limit',
  }[kind];
  setText(state, text);
  state.title = l.throttledAt ? `Last throttled ${fmtAgo(l.throttledAt)}; ${fmtInt(l.throttleReports)} throttling reports` : 'Never throttled';
}

/** A channel with several providers: its order and where live workers send now. */
function routeRow(channel) {
  const cells = {
    channel: h('th', { scope: 'row', className: 'cell-full' }, channel),
    providers: h('td', { className: 'mono', 'data-label': 'Providers, in order' }),
    active: h('td', { className: 'mono', 'data-label': 'Sending through', dataset: { role: 'active' } }),
  };
  return { tr: cardRow({ dataset: { channel } }, Object.values(cells)), cells };
}

function updateRouteRow({ tr, cells }, r) {
  const providers = r.providers || [];
  const away = Object.keys(r.failingOver || {}).length;
  tr.dataset.failingOver = away ? 'yes' : 'no';
  setText(cells.providers, providers.join(' → '));
  setText(cells.active, r.active === providers[0] ? r.active : `${r.active} (failover: ${providers[0]} unavailable; ${fmtInt(away)} worker${away === 1 ? '' : 's'})`);
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
