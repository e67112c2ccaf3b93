// #/notifications: single sends, filtered by channel, status, recipient and time (GET /notifications); each
// opens its audit trail (#/notifications/<id>, view-notification.js).
//
// The filters live in the address (#/notifications?status=failed&channel=sms), so a filtered list can be
// bookmarked or sent to a colleague; changing them rewrites the address without a new history entry.
// The time filter is offered only when the server's /openapi.json lists `since` and `until` (a server
// without them would ignore them and list everything, which would look like a filtered answer).

import { ApiError, api, queryParameters } from './api.js';
import { CHANNEL_OPTIONS, MESSAGE_STATUS_LABELS, MessageArea, cardRow, field, messageBadge, pageHeading, select, table } from './components.js';
import { address, fmtDateTime, fmtInt, h, isAbort, setText } from './dom.js';

const PAGE_SIZE = 50;
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
