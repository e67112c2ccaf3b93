// #/campaigns: every campaign with a live progress bar.
//
// The first page comes from GET /campaigns, then GET /events/campaigns pushes the newest
// campaigns whenever one changes. Rows are keyed by id and updated in place, so bars glide
// (CSS transition) instead of the table being rebuilt.

import { api } from './api.js';
import { LiveIndicator, MessageArea, ProgressBar, cardRow, pageHeading, statusBadge, table, updateStatusBadge } from './components.js';
import { fmtDateTime, fmtInt, h, isAbort, setText } from './dom.js';
import { followEvents } from './sse.js';

const PAGE_SIZE = 50;

export function renderCampaigns(container, { signal }) {
  const live = new LiveIndicator();
  const messages = new MessageArea('campaigns-message');
  const list = table('Campaigns', ['Name', 'Status', 'Progress', 'Sent', 'Failed', 'Total', 'Created'], {
    id: 'campaigns-table',
    numeric: [3, 4, 5],
    cards: true, // rows become cards on phones
  });
  const empty = h(
    'div',
    { className: 'empty', hidden: true },
    h('p', {}, 'No campaigns yet.'),
    h('a', { className: 'btn btn--primary', href: '#/new' }, 'Create a campaign'),
  );
  const more = h('button', { type: 'button', className: 'btn', hidden: true }, 'Load older campaigns');
  container.replaceChildren(
    h(
      'div',
      { className: 'page-header' },
      pageHeading('Campaigns'),
      live.el,
      h('a', { className: 'btn btn--primary page-header__action', href: '#/new' }, 'New campaign'),
    ),
    messages.el,
    h('section', { className: 'card card--flush', 'aria-label': 'Campaign list' }, list.wrap, empty, h('div', { className: 'card__footer' }, more)),
  );

  const rows = new Map(); // id -> {campaign, tr, parts}
  let nextCursor = null;

  /** Insert or update campaigns, keeping newest first. */
  function merge(items) {
    for (const campaign of items) {
      const known = rows.get(campaign.id);
      if (known) updateRow(known, campaign);
      else rows.set(campaign.id, createRow(campaign));
    }
    const ordered = [...rows.values()].sort(newestFirst);
    ordered.forEach((row, i) => {
      if (list.body.children[i] !== row.tr) list.body.insertBefore(row.tr, list.body.children[i] || null);
    });
    empty.hidden = rows.size > 0;
    list.wrap.hidden = rows.size === 0;
  }

  async function loadPage(cursor) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) query.set('cursor', cursor);
    const page = await api(`/campaigns?${query}`, { signal });
    merge(page.items);
    if (!cursor || nextCursor === cursor) nextCursor = page.nextCursor;
    more.hidden = !nextCursor;
    messages.clear();
  }

  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      await loadPage(nextCursor);
    } catch (error) {
      if (!isAbort(error)) messages.show('error', `Could not load more campaigns: ${error.message}`);
    } finally {
      more.disabled = false;
    }
  });

  /** Poll fallback while the stream is down; errors are shown, not thrown. */
  async function refresh() {
    try {
      await loadPage(null);
    } catch (error) {
      if (!isAbort(error) && error.status !== 401) messages.show('error', `Could not load campaigns: ${error.message}`);
      if (isAbort(error)) throw error;
    }
  }

  refresh().then(() =>
    followEvents('/events/campaigns', {
      signal,
      onState: (state) => live.set(state),
      poll: refresh,
      onEvent: ({ event, data }) => {
        if (event !== 'campaigns') return;
        merge(JSON.parse(data).items || []);
      },
    }),
  ).catch((error) => {
    if (!isAbort(error)) messages.show('error', error.message);
  });
}

/**
 * The API's order: created_at descending, then id descending. By parsed time, not by comparing the ISO
 * strings: their fractional seconds vary in length ("10:00:00Z" vs "10:00:00.5Z"), which sorts wrongly.
 */
function newestFirst(a, b) {
  const byTime = (Date.parse(b.campaign.createdAt) || 0) - (Date.parse(a.campaign.createdAt) || 0);
  if (byTime) return byTime;
  const [x, y] = [String(b.campaign.id), String(a.campaign.id)];
  return x < y ? -1 : x > y ? 1 : 0;
}

function createRow(campaign) {
  const link = h('a', { href: `#/campaigns/${encodeURIComponent(campaign.id)}`, className: 'campaign-link' });
  const parts = {
    link,
    badge: statusBadge(campaign.status),
    bar: new ProgressBar({ label: 'Progress', compact: true }),
    // data-label names the value when a phone shows each row as a card (see app.css).
    sent: h('td', { className: 'num cell-count', 'data-label': 'Sent' }),
    failed: h('td', { className: 'num cell-count', 'data-label': 'Failed' }),
    total: h('td', { className: 'num cell-count', 'data-label': 'Total' }),
    created: h('td', { className: 'nowrap cell-created', 'data-label': 'Created' }),
  };
  const tr = cardRow({ dataset: { campaignId: campaign.id } }, [
    h('td', { className: 'cell-name' }, link),
    h('td', { className: 'cell-status' }, parts.badge),
    h('td', { className: 'cell-progress' }, parts.bar.el),
    parts.sent,
    parts.failed,
    parts.total,
    parts.created,
  ]);
  const row = { campaign, tr, parts };
  updateRow(row, campaign);
  return row;
}

function updateRow(row, campaign) {
  row.campaign = campaign;
  const { parts } = row;
  setText(parts.link, campaign.name); // text only: names are user data
  parts.bar.track.setAttribute('aria-label', `Progress of ${campaign.name}`);
  updateStatusBadge(parts.badge, campaign.status);
  parts.bar.update(campaign.progress, campaign.totalMessages);
  setText(parts.sent, fmtInt(campaign.sentCount));
  setText(parts.failed, fmtInt(campaign.failedCount));
  setText(parts.total, fmtInt(campaign.totalMessages));
  setText(parts.created, fmtDateTime(campaign.createdAt));
}
