// #/suppressions: the addresses no message goes to (GET /suppressions), filtered by channel and reason; an address
// added by hand (POST /suppressions, reason `manual`), and one taken off the list (DELETE
// /suppressions/{channel}/{address}) after a confirmation. The filters live in the address, as on #/dead-letters.

import { ApiError, api, request } from './api.js';
import { MessageArea, cardRow, confirmInline, field, pageHeading, select, setFieldError, table } from './components.js';
import { address, fmtDateTime, fmtInt, h, isAbort, setText } from './dom.js';

const PAGE_SIZE = 100;

/** Why an address is on the list (the API's `reason`). */
export const SUPPRESSION_REASONS = {
  hard_bounce: 'Hard bounce',
  complaint: 'Spam complaint',
  unsubscribed: 'Unsubscribed',
  invalid_token: 'Invalid push token',
  opted_out_sms: 'SMS opt-out',
  manual: 'Added by hand',
};

/** The channels a suppression can name (in-app messages have no address to suppress). */
const CHANNELS = [
  ['email', 'Email'],
  ['sms', 'SMS'],
  ['push', 'Push'],
];

export function renderSuppressions(container, { signal, query }) {
  const f = {
    channel: field({ id: 'sup-channel', label: 'Channel', control: select('channel', [['', 'Any channel'], ...CHANNELS], query.get('channel') || '') }),
    reason: field({
      id: 'sup-reason',
      label: 'Reason',
      control: select('reason', [['', 'Any reason'], ...Object.entries(SUPPRESSION_REASONS)], query.get('reason') || ''),
    }),
  };
  const filters = h(
    'form',
    { className: 'card filters', id: 'suppression-filters', 'aria-label': 'Filters', novalidate: true },
    h('div', { className: 'filters__row filters__row--even' }, f.channel.wrapper, f.reason.wrapper),
    h('div', { className: 'btn-row' }, h('button', { type: 'submit', className: 'btn btn--primary' }, 'Apply'), h('button', { type: 'button', className: 'btn btn--ghost', id: 'sup-clear' }, 'Clear')),
  );

  const add = {
    channel: field({ id: 'sup-add-channel', label: 'Channel', control: select('channel', CHANNELS, 'email') }),
    address: field({
      id: 'sup-add-address',
      label: 'Address',
      hint: 'An email address, a phone number or a device token.',
      control: h('input', { type: 'text', name: 'address', autocomplete: 'off', spellcheck: 'false', required: true, maxlength: '4096' }),
    }),
    detail: field({
      id: 'sup-add-detail',
      label: 'Note',
      hint: 'Optional: why, for other operators.',
      control: h('input', { type: 'text', name: 'detail', autocomplete: 'off', maxlength: '500' }),
    }),
  };
  const addButton = h('button', { type: 'submit', className: 'btn btn--primary', id: 'sup-add-submit' }, 'Suppress address');
  const addForm = h(
    'form',
    { className: 'card', id: 'suppression-add', 'aria-labelledby': 'sup-add-title', novalidate: true },
    h('h2', { id: 'sup-add-title' }, 'Suppress an address by hand'),
    h('div', { className: 'filters__row' }, add.channel.wrapper, add.address.wrapper, add.detail.wrapper),
    h('div', { className: 'btn-row' }, addButton),
  );

  const messages = new MessageArea('suppressions-message');
  const confirmSlot = h('div', { className: 'confirm-slot', id: 'suppressions-confirm' });
  const summary = h('p', { className: 'muted', id: 'suppressions-summary', 'aria-live': 'polite' });
  const list = table('Suppressed addresses', ['Address', 'Channel', 'Reason', 'Detail', 'Added', 'Action'], { id: 'suppressions-table', cards: true });
  const empty = h('div', { className: 'empty', id: 'suppressions-empty', hidden: true }, h('p', {}, 'No suppressed addresses match.'));
  const more = h('button', { type: 'button', className: 'btn', hidden: true }, 'Show more');
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('Suppressions')),
    h(
      'p',
      { className: 'muted page-intro' },
      'Addresses no message goes to: hard bounces, spam complaints, invalid push tokens, SMS opt-outs and entries added by hand stop every message; ' +
        'an unsubscribe stops bulk messages (of its category, when it names one). Removing an entry lets new messages through.',
    ),
    addForm,
    filters,
    messages.el,
    h('div', { className: 'toolbar toolbar--row' }, summary),
    confirmSlot,
    h('section', { className: 'card card--flush', 'aria-label': 'Suppression list' }, list.wrap, empty, h('div', { className: 'card__footer' }, more)),
  );

  let applied = { channel: query.get('channel') || '', reason: query.get('reason') || '' };
  let cursor = null;
  let shown = 0;

  async function load(next = null) {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (applied.channel) q.set('channel', applied.channel);
    if (applied.reason) q.set('reason', applied.reason);
    if (next) q.set('cursor', next);
    try {
      const page = await api(`/suppressions?${q}`, { signal });
      if (!next) {
        list.body.replaceChildren();
        shown = 0;
      }
      for (const s of page.items) list.body.append(suppressionRow(s, remove));
      shown += page.items.length;
      cursor = page.nextCursor;
      more.hidden = !cursor;
      renderCount();
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      messages.show('error', `Could not load the suppression list: ${error.message}`);
    }
  }

  function renderCount() {
    empty.hidden = shown > 0;
    list.wrap.hidden = shown === 0;
    setText(summary, shown ? `${fmtInt(shown)}${cursor ? '+' : ''} suppressed address${shown === 1 && !cursor ? '' : 'es'}${describe(applied)}.` : '');
  }

  async function remove(s, button, row) {
    const yes = await confirmInline(confirmSlot, {
      text: `Take ${s.address} (${s.channel}) off the suppression list? New messages to it will be sent.`,
      yes: 'Yes, remove it',
      no: 'Keep it',
      returnTo: button,
      id: 'confirm-unsuppress',
    });
    if (!yes) return;
    button.disabled = true;
    try {
      await api(`/suppressions/${encodeURIComponent(s.channel)}/${encodeURIComponent(s.address)}`, { method: 'DELETE', signal });
      // Every entry of the address goes (unsubscribes of other categories too): drop all its rows.
      for (const tr of [...list.body.children]) {
        if (tr.dataset.channel === s.channel && tr.dataset.address === s.address) {
          tr.remove();
          shown -= 1;
        }
      }
      renderCount();
      messages.show('success', `${s.address} was removed from the suppression list.`);
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      if (error.status === 404) {
        row.remove();
        shown -= 1;
        renderCount();
        messages.show('info', `${s.address} was no longer on the list.`);
      } else {
        button.disabled = false;
        messages.show('error', `Could not remove it: ${error.message}`);
      }
    }
  }

  addForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    setFieldError(add.address);
    setFieldError(add.detail);
    const value = add.address.control.value.trim();
    if (!value) {
      setFieldError(add.address, 'Enter the address to suppress.');
      add.address.control.focus();
      return;
    }
    const body = { channel: add.channel.control.value, address: value, reason: 'manual' };
    const detail = add.detail.control.value.trim();
    if (detail) body.detail = detail;
    addButton.disabled = true;
    try {
      const { data: entry, response } = await request('/suppressions', { method: 'POST', body, signal });
      // 200: it was on the list already (the existing entry; an unsubscribe became `manual`).
      const was = response.status === 200 ? ' It was on the list already.' : '';
      messages.show('success', `${entry.address} is suppressed on ${entry.channel}: no message goes to it.${was}`);
      add.address.control.value = '';
      add.detail.control.value = '';
      await load();
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      if (error instanceof ApiError && error.status === 422) {
        const name = error.details?.field || (error.details?.fields || [])[0] || '';
        const target = name.includes('detail') ? add.detail : add.address;
        setFieldError(target, error.message);
        target.control.focus();
      } else messages.show('error', `Could not add it: ${error.message}`);
    } finally {
      addButton.disabled = false;
    }
  });

  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    applied = { channel: f.channel.control.value, reason: f.reason.control.value };
    remember();
    confirmSlot.replaceChildren();
    messages.clear();
    load();
  });
  filters.querySelector('#sup-clear').addEventListener('click', () => {
    f.channel.control.value = '';
    f.reason.control.value = '';
    applied = { channel: '', reason: '' };
    remember();
    messages.clear();
    load();
  });
  more.addEventListener('click', async () => {
    more.disabled = true;
    await load(cursor);
    more.disabled = false;
  });

  function remember() {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(applied)) if (value) q.set(key, value);
    const text = q.toString();
    history.replaceState(null, '', `#/suppressions${text ? `?${text}` : ''}`);
  }

  load();
}

/** " on email, hard bounce" for the applied filters ('' without). */
function describe({ channel, reason }) {
  const parts = [];
  if (channel) parts.push(`on ${channel}`);
  if (reason) parts.push(`reason: ${(SUPPRESSION_REASONS[reason] || reason).toLowerCase()}`);
  return parts.length ? ` ${parts.join(', ')}` : '';
}

function suppressionRow(s, onRemove) {
  const button = h('button', { type: 'button', className: 'btn btn--small btn--danger', dataset: { remove: s.address } }, 'Remove');
  const detail = [
    s.category ? h('span', { className: 'sup-category' }, `Category ${s.category}. `) : null,
    s.detail || (s.category ? null : '—'),
    s.messageId ? h('span', { className: 'muted' }, ' (', h('a', { href: `#/notifications/${encodeURIComponent(s.messageId)}`, className: 'message-link' }, `message ${s.messageId}`), ')') : null,
  ];
  const row = cardRow({ dataset: { channel: s.channel, address: s.address, reason: s.reason } }, [
    h('td', { className: 'cell-full cell-addr' }, address(s.address)),
    h('td', { 'data-label': 'Channel' }, s.channel),
    h('td', { className: 'cell-two', 'data-label': 'Reason' }, SUPPRESSION_REASONS[s.reason] || s.reason),
    h('td', { className: 'cell-wrap cell-full', 'data-label': 'Detail' }, detail),
    h('td', { className: 'nowrap cell-two', 'data-label': 'Added' }, fmtDateTime(s.createdAt)),
    h('td', { className: 'cell-action' }, button),
  ]);
  button.addEventListener('click', () => onRemove(s, button, row));
  return row;
}
