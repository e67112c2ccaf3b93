// #/dead-letters: messages that failed for good (GET /dead-letters), filtered by channel and campaign, and sent
// again with fresh attempts (POST /dead-letters/redrive): one ({"ids": [id]}) or every one matching the filters
// ({"filter": {...}}), each after a confirmation. The filters live in the address, as on #/notifications.

import { api } from './api.js';
import { CHANNEL_OPTIONS, MessageArea, cardRow, confirmInline, field, pageHeading, select, table } from './components.js';
import { address, fmtDateTime, fmtInt, h, isAbort, setText } from './dom.js';

const PAGE_SIZE = 50;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export function renderDeadLetters(container, { signal, query }) {
  const f = {
    channel: field({ id: 'dl-channel', label: 'Channel', control: select('channel', CHANNEL_OPTIONS, query.get('channel') || '') }),
    campaign: field({
      id: 'dl-campaign',
      label: 'Campaign id',
      hint: 'Optional: only this campaign’s dead letters.',
      control: h('input', { type: 'text', name: 'campaignId', value: query.get('campaignId') || '', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. 3f2c…' }),
    }),
  };
  const form = h(
    'form',
    { className: 'card filters', id: 'dead-letter-filters', 'aria-label': 'Filters', novalidate: true },
    h('div', { className: 'filters__row filters__row--2' }, f.channel.wrapper, f.campaign.wrapper),
    h('div', { className: 'btn-row' }, h('button', { type: 'submit', className: 'btn btn--primary' }, 'Apply'), h('button', { type: 'button', className: 'btn btn--ghost', id: 'dl-clear' }, 'Clear')),
  );
  const messages = new MessageArea('dead-letters-message');
  const redriveAll = h('button', { type: 'button', className: 'btn', id: 'redrive-all', hidden: true }, 'Redrive all matching');
  const confirmSlot = h('div', { className: 'confirm-slot', id: 'dead-letters-confirm' });
  const summary = h('p', { className: 'muted', id: 'dead-letters-summary', 'aria-live': 'polite' });
  const list = table('Dead letters', ['Recipient', 'Channel', 'Campaign', 'Attempts', 'Last error', 'Failed at', 'Action'], {
    id: 'dead-letters-table',
    numeric: [3],
    cards: true,
  });
  const empty = h('div', { className: 'empty', id: 'dead-letters-empty', hidden: true }, h('p', {}, 'No dead letters match. Nothing is waiting to be sent again.'));
  const more = h('button', { type: 'button', className: 'btn', hidden: true }, 'Show more');
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('Dead letters')),
    h('p', { className: 'muted page-intro' }, 'Messages that failed for good (a permanent error, or their last attempt). Redrive sends them again with fresh attempts.'),
    form,
    messages.el,
    h('div', { className: 'toolbar toolbar--row' }, summary, redriveAll),
    confirmSlot,
    h('section', { className: 'card card--flush', 'aria-label': 'Dead letter list' }, list.wrap, empty, h('div', { className: 'card__footer' }, more)),
  );

  let applied = { channel: query.get('channel') || '', campaignId: query.get('campaignId') || '' };
  let cursor = null;
  let shown = 0;

  function apiQuery(next) {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (applied.channel) q.set('channel', applied.channel);
    if (applied.campaignId) q.set('campaignId', applied.campaignId);
    if (next) q.set('cursor', next);
    return q;
  }

  async function load(next = null) {
    try {
      const page = await api(`/dead-letters?${apiQuery(next)}`, { signal });
      if (!next) {
        list.body.replaceChildren();
        shown = 0;
      }
      for (const m of page.items) list.body.append(deadLetterRow(m, redriveOne));
      shown += page.items.length;
      cursor = page.nextCursor;
      more.hidden = !cursor;
      empty.hidden = shown > 0;
      list.wrap.hidden = shown === 0;
      redriveAll.hidden = shown === 0;
      setText(redriveAll, `Redrive all matching${describe(applied)}`);
      setText(summary, shown ? `${fmtInt(shown)}${cursor ? '+' : ''} dead letter${shown === 1 && !cursor ? '' : 's'}${describe(applied)}.` : '');
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      messages.show('error', `Could not load dead letters: ${error.message}`);
    }
  }

  async function redriveOne(m, button) {
    const yes = await confirmInline(confirmSlot, {
      text: `Send the message to ${m.to} again with fresh attempts?`,
      yes: 'Yes, redrive it',
      no: 'Not now',
      returnTo: button,
      id: 'confirm-redrive',
    });
    if (!yes) return;
    await send({ ids: [m.id] }, 'message');
  }

  redriveAll.addEventListener('click', async () => {
    const filter = {};
    if (applied.channel) filter.channel = applied.channel;
    if (applied.campaignId) filter.campaignId = applied.campaignId;
    const which = Object.keys(filter).length ? `every dead letter${describe(applied)}` : 'every dead letter, on every channel and campaign';
    const yes = await confirmInline(confirmSlot, {
      text: `Send ${which} again with fresh attempts? This includes any not listed on this page.`,
      yes: 'Yes, redrive them all',
      no: 'Not now',
      returnTo: redriveAll,
      id: 'confirm-redrive',
    });
    if (!yes) return;
    await send({ filter }, 'all');
  });

  async function send(body, what) {
    try {
      const answer = await api('/dead-letters/redrive', { method: 'POST', body, signal });
      const n = answer.redriven;
      messages.show(
        'success',
        n ? `${fmtInt(n)} ${n === 1 ? 'message was' : 'messages were'} queued again with fresh attempts.` : what === 'message' ? 'It is no longer a dead letter.' : 'Nothing to redrive.',
      );
      await load();
    } catch (error) {
      if (!isAbort(error) && error.status !== 401) messages.show('error', `Redrive failed: ${error.message}`);
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const campaignId = f.campaign.control.value.trim();
    f.campaign.errorEl.hidden = true;
    f.campaign.control.removeAttribute('aria-invalid');
    if (campaignId && !UUID.test(campaignId)) {
      f.campaign.errorEl.textContent = 'A campaign id looks like 3f2c5e1a-…: 36 characters from its page’s address.';
      f.campaign.errorEl.hidden = false;
      f.campaign.control.setAttribute('aria-invalid', 'true');
      f.campaign.control.focus();
      return;
    }
    applied = { channel: f.channel.control.value, campaignId };
    remember();
    confirmSlot.replaceChildren();
    messages.clear();
    load();
  });
  form.querySelector('#dl-clear').addEventListener('click', () => {
    f.channel.control.value = '';
    f.campaign.control.value = '';
    applied = { channel: '', campaignId: '' };
    remember();
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
    history.replaceState(null, '', `#/dead-letters${text ? `?${text}` : ''}`);
  }

  load();
}

/** " on sms, campaign 3f2c…" for the applied filters ('' without). */
function describe({ channel, campaignId }) {
  const parts = [];
  if (channel) parts.push(`on ${channel}`);
  if (campaignId) parts.push(`of campaign ${campaignId.slice(0, 8)}…`);
  return parts.length ? ` ${parts.join(', ')}` : '';
}

function deadLetterRow(m, onRedrive) {
  const button = h('button', { type: 'button', className: 'btn btn--small', dataset: { redrive: m.id } }, 'Redrive');
  button.addEventListener('click', () => onRedrive(m, button));
  const campaign = m.campaignId
    ? h('a', { href: `#/campaigns/${encodeURIComponent(m.campaignId)}`, className: 'mono', title: m.campaignId }, `${m.campaignId.slice(0, 8)}…`)
    : h('span', { className: 'muted' }, 'single');
  return cardRow({ dataset: { messageId: m.id } }, [
    h('td', { className: 'cell-full cell-addr' }, h('a', { href: `#/notifications/${encodeURIComponent(m.id)}`, className: 'message-link' }, address(m.to))),
    h('td', { 'data-label': 'Channel' }, m.channel),
    h('td', { 'data-label': 'Campaign' }, campaign),
    h('td', { className: 'num', 'data-label': 'Attempts' }, fmtInt(m.attempts)),
    h('td', { className: 'cell-wrap cell-full', 'data-label': 'Last error' }, m.lastError || '—'),
    h('td', { className: 'nowrap cell-two', 'data-label': 'Failed at' }, fmtDateTime(m.updatedAt)),
    h('td', { className: 'cell-action' }, button),
  ]);
}
