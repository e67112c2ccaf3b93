// #/load-test: fire N notifications through the batch API and watch the workers drain them.
//
// Requests are POST /notifications with JSON arrays (at most 1000 items, the API's batch
// limit) to load+N@example.com (example.com goes to the mock provider), a few in flight at
// once. The drain is measured from GET /stats, polled every second: the growth of
// sent + failed since the start (all traffic, so run it on a quiet system for clean numbers).
//
// Stop ends the sending but lets the requests already in flight answer: the API may have
// accepted one before its answer arrives, and aborting it would lose that count (then the
// workers "drain" more than was "accepted"). Leaving the page does abort them.

import { api, request } from './api.js';
import { MessageArea, ProgressBar, cardRow, field, pageHeading, setFieldError, setStat, stat, table } from './components.js';
import { RateChart } from './chart.js';
import { fmtDuration, fmtInt, fmtRate, h, isAbort, replace, setText, sleep } from './dom.js';

const MAX_BATCH = 1000;
const STATS_INTERVAL_MS = 1000;
const STATUSES = ['pending', 'queued', 'sending', 'sent', 'failed', 'cancelled'];

export function renderLoadTest(container, { signal }) {
  const f = {
    total: field({ id: 'lt-total', label: 'Total notifications', control: numberInput(1, 1_000_000, 2000) }),
    batch: field({ id: 'lt-batch', label: `Batch size (1–${fmtInt(MAX_BATCH)} per request)`, control: numberInput(1, MAX_BATCH, 500) }),
    concurrency: field({ id: 'lt-concurrency', label: 'Requests in flight (1–16)', control: numberInput(1, 16, 4) }),
  };
  const start = h('button', { type: 'submit', className: 'btn btn--primary', id: 'lt-start' }, 'Start load test');
  const stop = h('button', { type: 'button', className: 'btn btn--danger', id: 'lt-stop', hidden: true }, 'Stop');
  const messages = new MessageArea('lt-message');
  const form = h(
    'form',
    { className: 'card form', id: 'load-test-form', novalidate: true, 'aria-labelledby': 'lt-form-title' },
    h('h2', { id: 'lt-form-title' }, 'Settings'),
    h('p', { className: 'muted' }, 'Sends bulk email notifications to load+N@example.com, which the mock provider accepts. Leaving this page stops sending (queued messages are still delivered).'),
    h('div', { className: 'form__row form__row--3' }, f.total.wrapper, f.batch.wrapper, f.concurrency.wrapper),
    h('div', { className: 'btn-row' }, start, stop),
  );

  const status = h('p', { className: 'lt-status', id: 'lt-status', role: 'status' }, 'Idle.');
  const acceptedBar = new ProgressBar({ label: 'Accepted by the API' });
  const drainedBar = new ProgressBar({ label: 'Delivered by the workers' });
  const figures = {
    accepted: stat('Accepted', 'accepted'),
    acceptRate: stat('Accepted per second', 'accept-rate'),
    drained: stat('Finished (sent + failed)', 'drained'),
    drainRate: stat('Drained per second, last 5 s', 'drain-rate'),
    backlog: stat('Waiting (queued + sending)', 'backlog'),
    sendRate: stat('Send rate, 1-min average', 'send-rate'),
  };
  const chart = new RateChart({ label: 'Messages finished per second (all traffic)' });
  chart.setStart(chart.now()); // from the page's opening; each run starts the chart again
  const byChannel = table('Messages by channel and status', ['Channel', ...STATUSES.map(capitalize)], {
    id: 'lt-stats-table',
    numeric: [1, 2, 3, 4, 5, 6],
    cards: true, // seven columns do not fit a phone: each channel becomes a card
  });
  const queueDepth = h('p', { className: 'muted', id: 'lt-queue-depth' });

  const title = pageHeading('Load test');
  container.replaceChildren(
    h('div', { className: 'page-header' }, title),
    messages.el,
    form,
    h(
      'section',
      { className: 'card', 'aria-labelledby': 'lt-run-title' },
      h('h2', { id: 'lt-run-title' }, 'This run'),
      status,
      h('h3', { className: 'label' }, 'Accepted by the API'),
      acceptedBar.el,
      h('h3', { className: 'label' }, 'Finished by the workers'),
      drainedBar.el,
      h('dl', { className: 'stats', id: 'lt-stats' }, Object.values(figures).map((s) => s.el)),
    ),
    h('section', { className: 'card', 'aria-labelledby': 'lt-chart-title' }, h('h2', { id: 'lt-chart-title' }, 'Finished per second'), chart.el),
    h('section', { className: 'card', 'aria-labelledby': 'lt-system-title' }, h('h2', { id: 'lt-system-title' }, 'All messages'), byChannel.wrap, queueDepth),
  );
  signal.addEventListener('abort', () => chart.dispose(), { once: true });

  let run = null; // the current or last run: {total, accepted, startedAt, baseline, ...}
  let samples = []; // [{at, finished}] from /stats, for the drain rate
  let lastFinished = null;

  /** One /stats reading: the drain numbers, the chart, the table. */
  function onStats(stats) {
    const by = stats.byStatus || {};
    const finished = (by.sent || 0) + (by.failed || 0);
    const sentTotal = by.sent || 0;
    const failedTotal = by.failed || 0;
    const at = chart.now();
    if (lastFinished) chart.addSpan(lastFinished.at, at, Math.max(0, sentTotal - lastFinished.sent), Math.max(0, failedTotal - lastFinished.failed));
    lastFinished = { sent: sentTotal, failed: failedTotal, at };
    const now = performance.now();
    samples = [...samples.filter((s) => now - s.at <= 5000), { at: now, finished }];
    const oldest = samples[0];
    const drainRate = now > oldest.at ? ((finished - oldest.finished) * 1000) / (now - oldest.at) : 0;
    setStat(figures.sendRate, stats.sendRatePerSecond || 0);
    setText(figures.sendRate.value, fmtRate(stats.sendRatePerSecond || 0));
    setStat(figures.backlog, (by.queued || 0) + (by.sending || 0) + (by.pending || 0));
    renderChannels(byChannel.body, stats.byChannel || {});
    const depth = stats.queueDepth || {};
    setText(queueDepth, `Queue depth: ${fmtInt(depth.bulk || 0)} bulk and ${fmtInt(depth.transactional || 0)} transactional batch jobs waiting.`);
    if (!run) return;
    if (run.baseline === null) run.baseline = finished;
    run.drained = Math.max(0, finished - run.baseline);
    setStat(figures.drained, run.drained);
    // While the run drains: the current rate. Once it has drained: the run's own figure, what it drained over
    // how long it took (2,000 in 2 min 07 s is 15.7/s, whatever the rate is afterwards).
    if (!run.drainedAt) setRate(figures.drainRate, drainRate);
    drainedBar.updateSimple(Math.min(run.drained, run.total), run.total);
    if (run.sendingDone && !run.drainedAt && run.accepted > 0 && run.drained >= run.accepted) {
      run.drainedAt = performance.now();
      const seconds = (run.drainedAt - run.startedAt) / 1000;
      const average = run.drained / Math.max(0.001, seconds);
      const after = `${fmtDuration(seconds, { precise: true })} (${fmtRate(average)} msg/s on average)`;
      setLabel(figures.drainRate, 'Drained per second, run average');
      setRate(figures.drainRate, average);
      chart.freeze(chart.now());
      if (run.stopped) {
        // Not "Done": the run did not send what was asked. The state stays `stopped`.
        setText(status, `Stopped after ${fmtInt(run.accepted)} of ${fmtInt(run.total)} accepted; all ${fmtInt(run.accepted)} finished after ${after}.`);
      } else {
        setText(status, `Done: ${fmtInt(run.accepted)} accepted in ${fmtDuration(run.acceptSeconds, { precise: true })}, all finished after ${after}.`);
        status.dataset.state = 'drained';
      }
    }
  }

  async function pollStats() {
    while (!signal.aborted) {
      try {
        // The browser's clock: the chart holds only counts taken here, so no server times need lining up, and the
        // chart's start and end are on the same clock as the run's (its average is the run's drain rate).
        const { data } = await requestStats(signal);
        onStats(data);
      } catch (error) {
        if (isAbort(error) || error.status === 401) return;
        messages.show('error', `Could not read /stats: ${error.message}`);
      }
      try {
        await sleep(STATS_INTERVAL_MS, signal);
      } catch {
        return;
      }
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = readSettings(f);
    if (!values) return;
    messages.clear();
    let stopping = false;
    stop.onclick = () => {
      stopping = true;
      stop.disabled = true;
      status.dataset.state = 'stopping';
      setText(status, `Stopping: waiting for the answers to the requests already sent (${fmtInt(run.accepted)} accepted so far)…`);
    };
    start.disabled = true;
    stop.disabled = false;
    stop.hidden = false;
    run = { ...values, accepted: 0, drained: 0, baseline: null, startedAt: performance.now(), sendingDone: false, stopped: false, drainedAt: null, acceptSeconds: 0 };
    resetFigures();
    setLabel(figures.drainRate, 'Drained per second, last 5 s');
    // The chart shows this run, from its start; its average is then the run's (what drained over how long).
    chart.reset();
    chart.freeze(null);
    chart.setStart(chart.now());
    status.dataset.state = 'sending';
    setText(status, `Sending ${fmtInt(values.total)} notifications…`);
    try {
      // The drain baseline is the /stats reading before the first request.
      const { data } = await requestStats(signal);
      run.baseline = (data.byStatus?.sent || 0) + (data.byStatus?.failed || 0);
      lastFinished = { sent: data.byStatus?.sent || 0, failed: data.byStatus?.failed || 0, at: chart.now() };
      await fire(values, { signal, stopped: () => stopping }, (n) => {
        run.accepted += n;
        run.acceptSeconds = (performance.now() - run.startedAt) / 1000;
        setStat(figures.accepted, run.accepted);
        setText(figures.acceptRate.value, fmtRate(run.accepted / Math.max(0.001, run.acceptSeconds)));
        figures.acceptRate.value.dataset.value = String(run.accepted / Math.max(0.001, run.acceptSeconds));
        acceptedBar.updateSimple(run.accepted, run.total);
      });
      run.sendingDone = true;
      if (stopping && run.accepted < run.total) {
        run.stopped = true;
        status.dataset.state = 'stopped';
        setText(
          status,
          run.accepted
            ? `Stopped after ${fmtInt(run.accepted)} of ${fmtInt(run.total)} accepted; waiting for the workers…`
            : 'Stopped before any notification was accepted.',
        );
      } else {
        status.dataset.state = 'draining';
        setText(status, `${fmtInt(run.accepted)} accepted in ${fmtDuration(run.acceptSeconds, { precise: true })}; waiting for the workers…`);
      }
    } catch (error) {
      run.sendingDone = true;
      run.stopped = true;
      if (isAbort(error)) return; // the page was left
      if (error.status !== 401) {
        status.dataset.state = 'failed';
        setText(status, `Stopped after ${fmtInt(run.accepted)} of ${fmtInt(run.total)} accepted.`);
        messages.show('error', `A request failed: ${error.message}`);
      }
    } finally {
      start.disabled = false;
      stop.hidden = true;
    }
  });

  resetFigures();
  pollStats();

  function resetFigures() {
    for (const s of Object.values(figures)) setStat(s, 0);
    acceptedBar.updateSimple(0, 1);
    drainedBar.updateSimple(0, 1);
  }
}

/** A rate figure: one decimal for reading, the exact value in data-value for scripts and tests. */
function setRate(figure, value) {
  figure.value.dataset.value = String(value);
  setText(figure.value, fmtRate(value));
}

function setLabel(figure, text) {
  setText(figure.el.querySelector('.stat__label'), text);
}

/** GET /stats with its response. */
function requestStats(signal) {
  return request('/stats', { signal });
}

/** Read and check the form; shows field errors and returns null when something is off. */
function readSettings(f) {
  const rules = [
    ['total', 1, 1_000_000],
    ['batch', 1, MAX_BATCH],
    ['concurrency', 1, 16],
  ];
  const values = {};
  let ok = true;
  for (const [key, min, max] of rules) {
    const value = Number(f[key].control.value);
    if (!Number.isInteger(value) || value < min || value > max) {
      setFieldError(f[key], `Enter a whole number from ${fmtInt(min)} to ${fmtInt(max)}.`);
      if (ok) f[key].control.focus();
      ok = false;
    } else setFieldError(f[key]);
    values[key] = value;
  }
  return ok ? values : null;
}

/**
 * Send `total` notifications in batches, `concurrency` requests at a time; `onAccepted(n)` per batch.
 * `stopped()` (Stop) and a failed request only end the sending of new batches: requests in flight are
 * left to answer and counted, since the API may already have accepted them. `signal` (leaving the page)
 * aborts them. Rejects with a failed request's error once every lane has settled.
 */
async function fire({ total, batch, concurrency }, { signal, stopped }, onAccepted) {
  let next = 0;
  let failed = false;
  const stamp = new Date().toISOString();
  async function lane() {
    while (next < total && !stopped() && !failed) {
      signal.throwIfAborted();
      const first = next;
      const size = Math.min(batch, total - first);
      next += size;
      const items = Array.from({ length: size }, (_, i) => ({
        channel: 'email',
        to: `load+${first + i + 1}@example.com`,
        subject: `Load test ${stamp}`,
        body: `Load test message ${first + i + 1} of ${total}.`,
        priority: 'bulk',
      }));
      try {
        await api('/notifications', { method: 'POST', body: items, signal });
      } catch (error) {
        failed = true; // the other lanes finish their current request, then stop
        throw error;
      }
      onAccepted(size);
    }
  }
  const lanes = Array.from({ length: Math.min(concurrency, Math.ceil(total / batch)) }, lane);
  const results = await Promise.allSettled(lanes);
  const rejected = results.find((r) => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}

function renderChannels(body, byChannel) {
  const channels = Object.keys(byChannel).sort();
  if (!channels.length) {
    replace(body, cardRow({}, [h('td', { colspan: String(STATUSES.length + 1), className: 'muted cell-full' }, 'No messages yet.')]));
    return;
  }
  replace(
    body,
    channels.map((channel) =>
      cardRow({}, [
        h('th', { scope: 'row', className: 'cell-full' }, channel),
        ...STATUSES.map((s) => h('td', { className: 'num', 'data-label': capitalize(s) }, fmtInt(byChannel[channel][s] || 0))),
      ]),
    ),
  );
}

function numberInput(min, max, value) {
  return h('input', { type: 'number', min: String(min), max: String(max), step: '1', value: String(value), inputmode: 'numeric', required: true });
}

function capitalize(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
