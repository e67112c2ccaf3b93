// #/webhooks/<id>: one webhook endpoint (GET /webhooks/{id}): where it points, what it receives, how it is doing,
// and its delivery log, newest first (GET /webhooks/{id}/deliveries, "Show more" follows the cursor). Send test
// POSTs a webhook.test event now (POST /webhooks/{id}/test; a disabled endpoint too, to check a fix first);
// Disable / Enable (PATCH `enabled`); Delete after an inline confirmation. The endpoint is read again every 5 s.

import { api } from './api.js';
import { MessageArea, cardRow, confirmInline, pageHeading, table } from './components.js';
import { fmtAgo, fmtDateTime, fmtInt, h, isAbort, replace, setText, sleep } from './dom.js';
import { webhookBadge, webhookEvents, webhookName, webhookTrouble } from './view-webhooks.js';

const REFRESH_MS = 5000;
const PAGE_SIZE = 25;

const OUTCOME_LABELS = { succeeded: 'Succeeded', failed: 'Failed', refused: 'Refused', abandoned: 'Abandoned' };

function outcomeBadge(outcome) {
  return h('span', { className: `badge badge--delivery-${String(outcome).replace(/[^a-z]/g, '')}`, dataset: { outcome } }, OUTCOME_LABELS[outcome] || outcome);
}

export function renderWebhook(container, { signal, params }) {
  const id = params[0];
  const path = `/webhooks/${encodeURIComponent(id)}`;
  const title = pageHeading('Webhook endpoint');
  const badgeSlot = h('span', { className: 'badge-slot', id: 'webhook-status' });
  const meta = h('dl', { className: 'meta wh-meta', id: 'webhook-meta' });
  const trouble = h('div', { id: 'webhook-trouble' });
  const testButton = h('button', { type: 'button', className: 'btn btn--primary', id: 'webhook-test' }, 'Send test');
  const toggleButton = h('button', { type: 'button', className: 'btn', id: 'webhook-toggle' }, 'Disable');
  const deleteButton = h('button', { type: 'button', className: 'btn btn--danger', id: 'webhook-delete' }, 'Delete');
  const actions = h('div', { className: 'btn-row actions', id: 'webhook-actions', hidden: true }, testButton, toggleButton, deleteButton);
  const confirmSlot = h('div', { className: 'confirm-slot', id: 'webhook-confirm' });
  const notice = new MessageArea('webhook-message');
  const log = table('Deliveries', ['When', 'Outcome', 'HTTP', 'Events', 'Time', 'Error'], { id: 'deliveries-table', numeric: [2, 4], cards: true });
  const logEmpty = h('p', { className: 'muted wh-log__empty', id: 'deliveries-empty', hidden: true }, 'Nothing delivered yet.');
  const refresh = h('button', { type: 'button', className: 'btn btn--small', id: 'deliveries-refresh' }, 'Refresh');
  const more = h('button', { type: 'button', className: 'btn', hidden: true, id: 'deliveries-more' }, 'Show more');
  container.replaceChildren(
    h('nav', { className: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/webhooks' }, '← Webhooks')),
    h('div', { className: 'page-header' }, title, badgeSlot),
    meta,
    trouble,
    h('div', { className: 'toolbar' }, actions, confirmSlot),
    notice.el,
    h(
      'section',
      { className: 'card card--flush', 'aria-labelledby': 'deliveries-title' },
      h('div', { className: 'card__header card__header--pad wh-log__header' }, h('h2', { id: 'deliveries-title' }, 'Recent deliveries'), refresh),
      logEmpty,
      log.wrap,
      h('div', { className: 'card__footer' }, more),
    ),
  );

  let endpoint = null;
  let shownKey = '';
  let cursor = null;
  let gone = false;

  function render(w) {
    endpoint = w;
    const key = JSON.stringify(w);
    if (key === shownKey) return; // unchanged: keep focus and selection
    shownKey = key;
    const name = webhookName(w);
    setText(title, name);
    document.title = `${name} · Webhooks · notifq`;
    replace(badgeSlot, webhookBadge(w.status));
    const items = [
      ['URL', h('span', { className: 'mono', id: 'webhook-url' }, w.url)],
      ['Events', h('span', { id: 'webhook-events', title: w.events.join(', ') }, webhookEvents(w))],
      ['Batch', w.batch ? 'yes, up to 100 events per POST' : 'no, one event per POST'],
      ['Pending', h('span', { id: 'webhook-pending', dataset: { value: String(w.pending) } }, fmtInt(w.pending))],
      ['Last success', w.lastSuccessAt ? `${fmtDateTime(w.lastSuccessAt)} (${fmtAgo(w.lastSuccessAt)})` : 'never'],
      ['Last failure', fmtDateTime(w.lastFailureAt)],
      ['Created', fmtDateTime(w.createdAt)],
      ['Id', h('span', { className: 'mono' }, w.id)],
    ];
    if (w.description) items.unshift(['Description', w.description]);
    replace(meta, items.map(([k, v]) => h('div', { className: 'meta__item' }, h('dt', {}, k), h('dd', {}, v))));
    const why = webhookTrouble(w);
    replace(trouble, why ? h('div', { className: `alert ${w.status === 'disabled' ? 'alert--warning' : 'alert--error'}`, role: 'status', id: 'webhook-reason' }, why) : null);
    setText(toggleButton, w.enabled ? 'Disable' : 'Enable');
    toggleButton.dataset.enabled = String(w.enabled);
    actions.hidden = false;
  }

  function missing() {
    gone = true;
    actions.hidden = true;
    confirmSlot.replaceChildren();
    notice.show('info', 'This webhook endpoint does not exist (any more). ', h('a', { href: '#/webhooks' }, 'All endpoints'));
  }

  async function loadEndpoint() {
    try {
      render(await api(path, { signal }));
      return true;
    } catch (error) {
      if (isAbort(error) || error.status === 401) return false;
      if (error.status === 404) missing();
      else notice.show('error', `Could not load the endpoint: ${error.message}`);
      return false;
    }
  }

  async function loadDeliveries(next = null) {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (next) q.set('cursor', next);
    try {
      const page = await api(`${path}/deliveries?${q}`, { signal });
      const rows = page.items.map(deliveryRow);
      if (next) log.body.append(...rows);
      else replace(log.body, rows);
      cursor = page.nextCursor;
      more.hidden = !cursor;
      const count = log.body.children.length;
      logEmpty.hidden = count > 0;
      log.wrap.hidden = count === 0;
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      if (error.status === 404) missing();
      else notice.show('error', `Could not load the deliveries: ${error.message}`);
    }
  }

  testButton.addEventListener('click', async () => {
    testButton.disabled = true;
    notice.show('info', 'Sending a test event…');
    try {
      const result = await api(`${path}/test`, { method: 'POST', signal });
      const status = result.responseStatus ? `HTTP ${result.responseStatus}` : 'no answer';
      const detail = `${result.eventId}: ${status} in ${fmtInt(result.durationMs)} ms`;
      if (result.outcome === 'succeeded') notice.show('success', `Test event delivered (${detail}).`);
      else notice.show('error', `Test event ${result.outcome} (${detail})${result.error ? `: ${result.error}` : '.'}`);
      await loadDeliveries();
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      if (error.status === 404) missing();
      else notice.show('error', `Could not send the test: ${error.message}`);
    } finally {
      testButton.disabled = false;
    }
  });

  toggleButton.addEventListener('click', async () => {
    if (!endpoint) return;
    const enabled = !endpoint.enabled;
    toggleButton.disabled = true;
    try {
      render(await api(path, { method: 'PATCH', body: { enabled }, signal }));
      notice.show('success', enabled ? 'Endpoint enabled: events from now on are delivered to it.' : 'Endpoint disabled: it receives no events until it is enabled again.');
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      if (error.status === 404) missing();
      else notice.show('error', `Could not ${enabled ? 'enable' : 'disable'} it: ${error.message}`);
    } finally {
      toggleButton.disabled = false;
    }
  });

  deleteButton.addEventListener('click', async () => {
    if (!endpoint) return;
    const yes = await confirmInline(confirmSlot, {
      text: `Delete the endpoint ${webhookName(endpoint)}? It stops receiving events at once; its queued events and delivery log are deleted too.`,
      yes: 'Yes, delete it',
      no: 'Keep it',
      returnTo: deleteButton,
      id: 'confirm-webhook-delete',
    });
    if (!yes) return;
    deleteButton.disabled = true;
    try {
      await api(path, { method: 'DELETE', signal });
      location.hash = '#/webhooks';
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      if (error.status === 404) missing();
      else notice.show('error', `Could not delete it: ${error.message}`);
      deleteButton.disabled = false;
    }
  });

  refresh.addEventListener('click', () => loadDeliveries());
  more.addEventListener('click', async () => {
    more.disabled = true;
    await loadDeliveries(cursor);
    more.disabled = false;
  });

  (async () => {
    if (!(await loadEndpoint())) return;
    await loadDeliveries();
    while (!signal.aborted && !gone) {
      try {
        await sleep(REFRESH_MS, signal);
      } catch {
        return;
      }
      await loadEndpoint();
    }
  })();
}

function deliveryRow(d) {
  const ids = d.eventIds || [];
  const events = ids.length === 0 ? 'test' : ids.length === 1 ? ids[0] : `${fmtInt(ids.length)} events (${ids[0]} …)`;
  return cardRow({ dataset: { deliveryId: d.id, outcome: d.outcome } }, [
    h('td', { className: 'nowrap cell-full' }, fmtDateTime(d.at)),
    h('td', { 'data-label': 'Outcome' }, outcomeBadge(d.outcome)),
    h('td', { className: 'num', 'data-label': 'HTTP' }, d.responseStatus ?? '—'),
    h('td', { className: 'cell-wrap', 'data-label': 'Events', title: ids.join(', ') }, events),
    h('td', { className: 'num cell-two', 'data-label': 'Time' }, d.durationMs == null ? '—' : `${fmtInt(d.durationMs)} ms`),
    h('td', { className: 'cell-wrap cell-full', 'data-label': 'Error' }, d.error || '—'),
  ]);
}
