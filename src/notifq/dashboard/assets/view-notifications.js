// #/notifications: single sends, filtered by channel, status, recipient and time (GET /notifications), and
// #/notifications/<id>: one message's audit trail (GET /notifications/{id}), campaign messages included.
//
// The filters live in the address (#/notifications?status=failed&channel=sms), so a filtered list can be
// bookmarked or sent to a colleague; changing them rewrites the address without a new history entry.
// The time filter is offered only when the server's /openapi.json lists `since` and `until` (a server
// without them would ignore them and list everything, which would look like a filtered answer).

import { ApiError, api, queryParameters } from './api.js';
import {
  CHANNEL_OPTIONS,
  MESSAGE_FINISHED,
  MESSAGE_STATUS_LABELS,
  MessageArea,
  cardRow,
  confirmInline,
  field,
  messageBadge,
  pageHeading,
  select,
  table,
} from './components.js';
import { address, fmtDateTime, fmtDuration, fmtInt, h, isAbort, replace, setText, sleep } from './dom.js';

const PAGE_SIZE = 50;
const DETAIL_REFRESH_MS = 2000;
const RANGES = [
  ['', 'Any time'],
  ['15m', 'Last 15 minutes'],
  ['1h', 'Last hour'],
  ['24h', 'Last 24 hours'],
  ['7d', 'Last 7 days'],
  ['custom', 'Between…'],
];
const RANGE_MS = { '15m': 15 * 60_000, '1h': 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000 };
const FILTERS = ['channel', 'status', 'to', 'range', 'since', 'until'];

export function renderNotifications(container, { signal, query }) {
  const initial = Object.fromEntries(FILTERS.map((k) => [k, query.get(k) || '']));
  const f = {
    channel: field({ id: 'nf-channel', label: 'Channel', control: select('channel', CHANNEL_OPTIONS, initial.channel) }),
    status: field({
      id: 'nf-status',
      label: 'Status',
      control: select('status', [['', 'Any status'], ...Object.entries(MESSAGE_STATUS_LABELS)], initial.status),
    }),
    to: field({
      id: 'nf-to',
      label: 'Recipient',
      control: h('input', { type: 'search', name: 'to', value: initial.to, autocomplete: 'off', spellcheck: 'false', placeholder: 'Exact address' }),
    }),
    range: field({ id: 'nf-range', label: 'Created', control: select('range', RANGES, initial.range || (initial.since || initial.until ? 'custom' : '')) }),
    since: field({ id: 'nf-since', label: 'From', control: h('input', { type: 'datetime-local', name: 'since', value: toLocalInput(initial.since) }) }),
    until: field({ id: 'nf-until', label: 'Until', control: h('input', { type: 'datetime-local', name: 'until', value: toLocalInput(initial.until) }) }),
  };
  const custom = h('div', { className: 'filters__custom' }, f.since.wrapper, f.until.wrapper);
  const time = h('div', { className: 'filters__time', id: 'nf-time', hidden: true }, f.range.wrapper, custom);
  const apply = h('button', { type: 'submit', className: 'btn btn--primary' }, 'Apply');
  const clear = h('button', { type: 'button', className: 'btn btn--ghost' }, 'Clear');
  const form = h(
    'form',
    { className: 'card filters', id: 'notifications-filters', 'aria-label': 'Filters', novalidate: true },
    h('div', { className: 'filters__row' }, f.channel.wrapper, f.status.wrapper, f.to.wrapper),
    time,
    h('div', { className: 'btn-row' }, apply, clear),
  );
  const messages = new MessageArea('notifications-message');
  const summary = h('p', { className: 'muted', id: 'notifications-summary', 'aria-live': 'polite' });
  const list = table('Notifications', ['Recipient', 'Channel', 'Status', 'Attempts', 'Provider', 'Created'], {
    id: 'notifications-table',
    numeric: [3],
    cards: true,
  });
  const empty = h('p', { className: 'empty muted', id: 'notifications-empty', hidden: true }, 'No notifications match these filters.');
  const more = h('button', { type: 'button', className: 'btn', hidden: true }, 'Show more');
  const refresh = h('button', { type: 'button', className: 'btn page-header__action', id: 'notifications-refresh' }, 'Refresh');
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('Notifications'), refresh),
    h('p', { className: 'muted page-intro' }, 'Single sends (POST /notifications), newest first. Campaign messages are on their campaign’s page.'),
    form,
    messages.el,
    summary,
    h('section', { className: 'card card--flush', 'aria-label': 'Notification list' }, list.wrap, empty, h('div', { className: 'card__footer' }, more)),
  );

  let timeSupported = false;
  let cursor = null;
  let shown = 0;
  const showCustom = () => {
    custom.hidden = f.range.control.value !== 'custom';
  };
  f.range.control.addEventListener('change', showCustom);
  showCustom();

  /** The filters as the form has them (the address keeps the same names). */
  function current() {
    const values = { channel: f.channel.control.value, status: f.status.control.value, to: f.to.control.value.trim() };
    if (timeSupported) {
      values.range = f.range.control.value;
      if (values.range === 'custom') {
        values.since = fromLocalInput(f.since.control.value);
        values.until = fromLocalInput(f.until.control.value);
      }
    }
    return values;
  }

  /** The API query for the filters; a range such as "last hour" is counted back from now at each load. */
  function apiQuery(values, next) {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const key of ['channel', 'status', 'to']) if (values[key]) q.set(key, values[key]);
    if (timeSupported && RANGE_MS[values.range]) q.set('since', new Date(Date.now() - RANGE_MS[values.range]).toISOString());
    if (timeSupported && values.range === 'custom') {
      if (values.since) q.set('since', values.since);
      if (values.until) q.set('until', values.until);
    }
    if (next) q.set('cursor', next);
    return q;
  }

  async function load(next = null) {
    const values = current();
    try {
      let page;
      try {
        page = await api(`/notifications?${apiQuery(values, next)}`, { signal });
      } catch (error) {
        // A server that refuses the time bounds: no time filter there, and the list without it.
        const fieldName = String(error?.details?.field || '');
        if (!(error instanceof ApiError) || error.status !== 422 || !timeSupported || !/^(since|until)$/.test(fieldName)) throw error;
        timeSupported = false;
        time.hidden = true;
        page = await api(`/notifications?${apiQuery(current(), next)}`, { signal });
      }
      if (!next) {
        list.body.replaceChildren();
        shown = 0;
      }
      for (const n of page.items) list.body.append(notificationRow(n));
      shown += page.items.length;
      cursor = page.nextCursor;
      more.hidden = !cursor;
      empty.hidden = shown > 0;
      list.wrap.hidden = shown === 0;
      setText(summary, shown ? `Showing ${fmtInt(shown)}${cursor ? ' (more below)' : ''}.` : '');
      messages.clear();
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      messages.show('error', `Could not load notifications: ${error.message}`);
    }
  }

  /** Keep the filters in the address (no new history entry: Back leaves the page, as for other pages). */
  function remember(values) {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(values)) if (value) q.set(key, value);
    const text = q.toString();
    history.replaceState(null, '', `#/notifications${text ? `?${text}` : ''}`);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = current();
    if (values.range === 'custom' && values.since && values.until && values.until <= values.since) {
      messages.show('error', '“Until” must be after “From”.');
      f.until.control.focus();
      return;
    }
    remember(values);
    load();
  });
  clear.addEventListener('click', () => {
    for (const key of ['channel', 'status', 'to', 'range', 'since', 'until']) f[key].control.value = '';
    showCustom();
    remember({});
    load();
  });
  more.addEventListener('click', async () => {
    more.disabled = true;
    await load(cursor);
    more.disabled = false;
  });
  refresh.addEventListener('click', () => load());

  (async () => {
    const params = await queryParameters('listNotifications');
    timeSupported = Boolean(params?.has('since') && params?.has('until'));
    time.hidden = !timeSupported;
    await load();
  })().catch((error) => {
    if (!isAbort(error)) messages.show('error', error.message);
  });
}

function notificationRow(n) {
  const link = h('a', { href: `#/notifications/${encodeURIComponent(n.id)}`, className: 'message-link' }, address(n.to));
  return cardRow({ dataset: { notificationId: n.id } }, [
    h('td', { className: 'cell-full cell-addr' }, link),
    h('td', { 'data-label': 'Channel' }, n.channel),
    h('td', { 'data-label': 'Status' }, messageBadge(n.status)),
    h('td', { className: 'num', 'data-label': 'Attempts' }, fmtInt(n.attempts)),
    h('td', { className: 'cell-wrap', 'data-label': 'Provider' }, n.provider || '—'),
    h('td', { className: 'nowrap cell-two', 'data-label': 'Created' }, fmtDateTime(n.createdAt)),
  ]);
}

// --- one message: its audit trail ---------------------------------------------------------------------

const EVENT_LABELS = {
  accepted: 'Accepted',
  attempt: 'Attempt',
  sent: 'Sent',
  failed: 'Failed',
  retry: 'Retry',
  throttled: 'Throttled',
  deferred: 'Deferred',
  lost: 'Lost',
  cancelled: 'Cancelled',
  paused: 'Paused',
  resumed: 'Resumed',
  released: 'Released',
  requeued: 'Requeued',
  redriven: 'Redriven',
};

export function renderNotification(container, { signal, params }) {
  const id = params[0];
  const path = `/notifications/${encodeURIComponent(id)}`;
  const title = pageHeading(`Notification ${id}`);
  const badgeSlot = h('span', { className: 'badge-slot' });
  const back = h('a', { href: '#/notifications' }, '← Notifications');
  const meta = h('dl', { className: 'meta', id: 'notification-meta' });
  const actions = h('div', { className: 'btn-row actions', id: 'notification-actions' });
  const confirmSlot = h('div', { className: 'confirm-slot' });
  const notice = new MessageArea('notification-message');
  const delivery = h('dl', { className: 'stats', id: 'notification-delivery' });
  const lastError = h('div', { id: 'notification-error' });
  const trail = table('Audit trail', ['When', 'Event', 'Attempt', 'Provider', 'Detail'], { id: 'trail-table', numeric: [2], cards: true });
  const trailCount = h('span', { className: 'muted card__subtitle' });
  container.replaceChildren(
    h('nav', { className: 'breadcrumb', 'aria-label': 'Breadcrumb' }, back),
    h('div', { className: 'page-header' }, title, badgeSlot),
    meta,
    h('div', { className: 'toolbar' }, actions, confirmSlot),
    notice.el,
    h('section', { className: 'card', 'aria-labelledby': 'delivery-title' }, h('h2', { id: 'delivery-title' }, 'Delivery'), delivery, lastError),
    h(
      'section',
      { className: 'card card--flush', 'aria-labelledby': 'trail-title' },
      h('div', { className: 'card__header card__header--pad' }, h('h2', { id: 'trail-title' }, 'Audit trail'), trailCount),
      trail.wrap,
    ),
  );

  let shownKey = '';
  function render(n) {
    const key = JSON.stringify(n);
    if (key === shownKey) return; // unchanged: keep focus and selection
    shownKey = key;
    document.title = `Notification ${n.id} · notifq`;
    replace(badgeSlot, messageBadge(n.status));
    if (n.campaignId) {
      back.setAttribute('href', `#/campaigns/${encodeURIComponent(n.campaignId)}`);
      back.textContent = '← Its campaign';
    }
    const items = [
      ['To', address(n.to)],
      ['Channel', n.channel],
      ['Priority', n.priority],
      ['Campaign', n.campaignId ? h('a', { href: `#/campaigns/${encodeURIComponent(n.campaignId)}`, className: 'mono' }, n.campaignId) : 'none (a single send)'],
      ['Subject', n.subject ?? (n.campaignId ? 'the campaign’s' : '—')],
      ['Created', fmtDateTime(n.createdAt)],
      ['Updated', fmtDateTime(n.updatedAt)],
    ];
    if (n.sendAt) items.push(['Send at', fmtDateTime(n.sendAt)]);
    replace(meta, items.map(([k, v]) => h('div', { className: 'meta__item' }, h('dt', {}, k), h('dd', {}, v))));

    const events = n.events || [];
    const count = (name) => events.filter((e) => e.event === name).length;
    const figures = [
      ['Attempts', fmtInt(n.attempts), 'attempts'],
      ['Retries', fmtInt(count('retry')), 'retries'],
      ['Throttled or deferred', fmtInt(count('throttled') + count('deferred')), 'held'],
      ['Provider', n.provider || '—', 'provider'],
      ['Provider message id', n.providerMessageId || '—', 'provider-message-id'],
    ];
    replace(
      delivery,
      figures.map(([label, value, role]) =>
        h('div', { className: `stat stat--${role}` }, h('dt', { className: 'stat__label' }, label), h('dd', { className: 'stat__value stat__value--text', dataset: { field: role } }, value)),
      ),
    );
    replace(lastError, n.lastError ? h('div', { className: 'alert alert--error', role: 'status' }, h('strong', {}, 'Last error: '), n.lastError) : null);

    const start = Date.parse(events[0]?.at || n.createdAt);
    replace(
      trail.body,
      events.map((e, i) =>
        cardRow({ dataset: { event: e.event } }, [
          h('td', { className: 'nowrap cell-full' }, fmtDateTime(e.at), i > 0 ? h('span', { className: 'muted since' }, ` +${fmtDuration((Date.parse(e.at) - start) / 1000, { precise: true })}`) : null),
          h('td', { 'data-label': 'Event' }, h('span', { className: `badge badge--event badge--event-${e.event}` }, EVENT_LABELS[e.event] || e.event)),
          h('td', { className: 'num', 'data-label': 'Attempt' }, e.attempt ?? '—'),
          h('td', { 'data-label': 'Provider' }, e.provider || '—'),
          h('td', { className: 'cell-wrap cell-full', 'data-label': 'Detail' }, e.detail || '—'),
        ]),
      ),
    );
    setText(trailCount, `${fmtInt(events.length)} event${events.length === 1 ? '' : 's'}, oldest first`);
    renderActions(n);
  }

  let actionsFor = '';
  function renderActions(n) {
    const key = `${n.status}:${n.campaignId ? 'c' : 's'}`;
    if (key === actionsFor) return;
    actionsFor = key;
    const buttons = [];
    if (n.status === 'failed') {
      buttons.push(h('button', { type: 'button', className: 'btn', id: 'action-redrive', onClick: (e) => redrive(e.currentTarget) }, 'Send again (redrive)'));
    }
    if (!n.campaignId && (n.status === 'pending' || n.status === 'queued')) {
      buttons.push(h('button', { type: 'button', className: 'btn btn--danger', id: 'action-cancel', onClick: (e) => cancel(e.currentTarget) }, 'Cancel'));
    }
    replace(actions, buttons);
    actions.hidden = buttons.length === 0;
  }

  async function redrive(button) {
    const yes = await confirmInline(confirmSlot, {
      text: 'Send this message again with fresh attempts?',
      yes: 'Yes, send it again',
      no: 'Not now',
      returnTo: button,
    });
    if (!yes) return;
    try {
      const answer = await api('/dead-letters/redrive', { method: 'POST', body: { ids: [id] }, signal });
      notice.show('success', answer.redriven ? 'Queued again with fresh attempts.' : 'Nothing to send again: it is no longer failed.');
      await refresh();
    } catch (error) {
      if (!isAbort(error) && error.status !== 401) notice.show('error', `Could not send it again: ${error.message}`);
    }
  }

  async function cancel(button) {
    const yes = await confirmInline(confirmSlot, { text: 'Cancel this notification? It will not be sent.', yes: 'Yes, cancel it', no: 'Keep it', returnTo: button });
    if (!yes) return;
    try {
      await api(`${path}/cancel`, { method: 'POST', signal });
      notice.show('success', 'Cancelled.');
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      notice.show('error', error.status === 409 ? `Too late to cancel: ${error.message}` : `Could not cancel: ${error.message}`);
    }
    await refresh();
  }

  let status = null;
  async function refresh() {
    const n = await api(path, { signal });
    status = n.status;
    render(n);
  }

  (async () => {
    try {
      await refresh();
    } catch (error) {
      if (error.status === 404 || error.status === 422) {
        container.replaceChildren(
          h(
            'div',
            { className: 'card empty' },
            pageHeading('Notification not found'),
            h('p', {}, 'No message has this id.'),
            h('a', { className: 'btn', href: '#/notifications' }, 'All notifications'),
          ),
        );
        return;
      }
      throw error;
    }
    // Until it reaches an end, its trail grows: read it again every 2 s (after that, only after an action).
    for (;;) {
      await sleep(DETAIL_REFRESH_MS, signal);
      if (MESSAGE_FINISHED.has(status)) continue;
      try {
        await refresh();
      } catch (error) {
        if (isAbort(error) || error.status === 401) throw error;
      }
    }
  })().catch((error) => {
    if (!isAbort(error) && error.status !== 401) notice.show('error', error.message);
  });
}

/** An ISO instant as a datetime-local value (the browser's zone), or ''. */
function toLocalInput(iso) {
  const at = Date.parse(iso || '');
  if (Number.isNaN(at)) return '';
  const d = new Date(at);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A datetime-local value (the browser's zone) as an ISO instant, or ''. */
function fromLocalInput(value) {
  if (!value) return '';
  const at = new Date(value);
  return Number.isNaN(at.getTime()) ? '' : at.toISOString();
}
