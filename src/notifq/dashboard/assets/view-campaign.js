// #/campaigns/<id>: one campaign, live: counts, progress, deliverability (bounces, complaints, unsubscribes, and
// why its guard paused it), messages per second, time left, failed messages, and the actions its status allows.

import { ApiError, api, request } from './api.js';
import {
  FINISHED,
  LiveIndicator,
  MessageArea,
  ProgressBar,
  cardRow,
  doneCount,
  pageHeading,
  setStat,
  stat,
  statusBadge,
  table,
  updateStatusBadge,
} from './components.js';
import { RateChart } from './chart.js';
import { address, fmtDateTime, fmtDuration, fmtInt, fmtRate, fmtShare, h, isAbort, replace, setText } from './dom.js';
import { followEvents } from './sse.js';
import { CampaignTimeline } from './timeline.js';

const FAILED_PAGE = 100;
const FAILED_RELOAD_MS = 2000; // at most one reload of the failed list per 2 s during a run

/** Which actions each status allows (mirrors the API's rules in docs/api.md). */
const ACTIONS = [
  { id: 'retry', label: 'Retry failed', statuses: ['processing', 'paused', 'completed', 'completed_with_failures'], needsFailed: true },
  { id: 'pause', label: 'Pause', statuses: ['scheduled', 'pending', 'processing'] },
  { id: 'resume', label: 'Resume', statuses: ['paused'] },
  { id: 'cancel', label: 'Cancel campaign', statuses: ['scheduled', 'pending', 'processing', 'paused'], danger: true },
];

export function renderCampaign(container, { signal, params }) {
  const id = params[0];
  const path = `/campaigns/${encodeURIComponent(id)}`;
  const view = buildLayout(container, id);
  let campaign = null;
  let last = null; // {sent, failed, at}: the counts of the previous update, for the chart's live increments
  let failedLoadedFor = null;
  let failedTimer = null;
  let failedCursor = null;
  let failedPaged = false; // the reader loaded pages beyond the first ("Show more")
  const failedRows = new Map(); // message id -> its <tr>

  /** Apply a campaign snapshot (from GET, the stream, or an action's answer). */
  function update(next) {
    const now = view.chart.now();
    if (last) view.chart.addSpan(last.at, now, Math.max(0, next.sentCount - last.sent), Math.max(0, next.failedCount - last.failed));
    last = { sent: next.sentCount, failed: next.failedCount, at: now };
    campaign = next;
    document.title = `${next.name} · notifq`;
    setText(view.title, next.name);
    updateStatusBadge(view.badge, next.status);
    renderMeta(view, next);
    view.bar.update(next.progress, next.totalMessages);
    setStat(view.stats.total, next.totalMessages);
    for (const key of ['pending', 'queued', 'sending', 'sent', 'failed', 'skipped', 'cancelled']) setStat(view.stats[key], next.progress[key] || 0);
    renderDeliverability(view, next);
    view.chart.setStart(runStart(next));
    view.chart.freeze(FINISHED.has(next.status) && next.completedAt ? Date.parse(next.completedAt) : null);
    timeline.onUpdate(next);
    renderFailedCount();
    renderEta();
    renderActions();
    if (failedLoadedFor !== next.failedCount) scheduleFailedReload();
  }

  function renderEta() {
    if (!campaign) return;
    setText(view.eta, etaText(campaign, view.chart.rate(10)));
  }

  // --- actions -------------------------------------------------------------------------
  let actionsKey = '';
  function renderActions() {
    const allowed = ACTIONS.filter((a) => a.statuses.includes(campaign.status) && (!a.needsFailed || campaign.failedCount > 0));
    const key = allowed.map((a) => a.id).join(',');
    if (key === actionsKey) return;
    actionsKey = key;
    const hadFocus = view.actions.contains(document.activeElement);
    replace(
      view.actions,
      allowed.map((a) =>
        h(
          'button',
          { type: 'button', id: `action-${a.id}`, className: a.danger ? 'btn btn--danger' : 'btn', onClick: () => (a.id === 'cancel' ? confirmCancel() : run(a)) },
          a.label,
        ),
      ),
    );
    view.actions.hidden = allowed.length === 0;
    if (hadFocus) (view.actions.querySelector('button') || view.title).focus();
  }

  /** Cancel cannot be undone: ask inline (a native confirm() would block the live updates). */
  function confirmCancel() {
    const yes = h('button', { type: 'button', className: 'btn btn--danger', id: 'confirm-cancel' }, 'Yes, cancel it');
    const no = h('button', { type: 'button', className: 'btn' }, 'Keep sending');
    const box = h(
      'div',
      { className: 'confirm', role: 'group', 'aria-labelledby': 'confirm-cancel-text' },
      h('p', { id: 'confirm-cancel-text' }, 'Cancel this campaign? Messages not yet started will not be sent. This cannot be undone.'),
      h('div', { className: 'btn-row' }, yes, no),
    );
    const close = () => {
      box.remove();
      view.actions.querySelector('#action-cancel')?.focus();
    };
    yes.addEventListener('click', () => {
      box.remove();
      run(ACTIONS.find((a) => a.id === 'cancel'));
    });
    no.addEventListener('click', close);
    box.addEventListener('keydown', (event) => event.key === 'Escape' && close());
    view.confirm.replaceChildren(box);
    yes.focus();
  }

  async function run(action) {
    for (const b of view.actions.querySelectorAll('button')) b.disabled = true;
    try {
      const answer = await api(`${path}/${action.id}`, { method: 'POST', signal });
      if (action.id === 'retry') {
        view.notice.show('success', `${fmtInt(answer.requeued)} failed ${answer.requeued === 1 ? 'message was' : 'messages were'} queued again.`);
        update(await api(path, { signal }));
      } else {
        view.notice.show('success', `Campaign ${answer.status === 'cancelled' ? 'cancelled' : answer.status === 'paused' ? 'paused' : 'resumed'}.`);
        update(answer);
      }
    } catch (error) {
      if (isAbort(error)) return;
      if (error instanceof ApiError && error.status === 409) {
        view.notice.show('error', `Not possible now: ${error.message}`);
        refresh();
      } else if (error.status !== 401) view.notice.show('error', `The action failed: ${error.message}`);
    } finally {
      for (const b of view.actions.querySelectorAll('button')) b.disabled = false;
    }
  }

  // --- failed messages -----------------------------------------------------------------
  function renderFailedCount() {
    const shown = view.failed.body.children.length;
    const text = `${fmtInt(campaign.failedCount)} failed${shown ? ` · showing ${fmtInt(shown)}` : ''}`;
    setText(view.failedCount, text);
  }

  function scheduleFailedReload() {
    if (failedTimer) return;
    const wait = failedLoadedFor === null ? 0 : FAILED_RELOAD_MS;
    failedTimer = setTimeout(() => {
      failedTimer = null;
      loadFailed(null).catch(() => {});
    }, wait);
  }
  signal.addEventListener('abort', () => clearTimeout(failedTimer));

  /**
   * Load a page of failed messages: the next one (`cursor`, "Show more"), or the first one again
   * because the failed count changed. That reload replaces the list only when the reader has not paged
   * beyond it, or when failures went away (a retry requeued them, so rows may be stale). Otherwise the
   * first page is merged into what is shown, keeping the pages the reader asked for; new failures past
   * them come with the next "Show more" (those between the first page and the last shown, on the next
   * reset: the cursor is opaque, so the list cannot be re-read from the middle).
   */
  async function loadFailed(cursor) {
    const previous = failedLoadedFor;
    // Remember what this load is for at once, so updates arriving meanwhile do not queue a duplicate.
    if (!cursor) failedLoadedFor = campaign.failedCount;
    const query = new URLSearchParams({ status: 'failed', limit: String(FAILED_PAGE) });
    if (cursor) query.set('cursor', cursor);
    try {
      const page = await api(`${path}/messages?${query}`, { signal });
      const replaceAll = !cursor && (!failedPaged || (previous !== null && failedLoadedFor < previous));
      if (replaceAll) {
        failedRows.clear();
        view.failed.body.replaceChildren();
        failedPaged = false;
      }
      for (const m of page.items) putFailedRow(m);
      if (cursor) failedPaged = true;
      // A merged first page keeps the cursor past the pages already shown; when those were all there was,
      // "Show more" walks on from the first page again (rows already shown are updated, not repeated).
      if (cursor || replaceAll || !failedCursor) failedCursor = page.nextCursor;
      view.failedMore.hidden = !failedCursor;
      const shown = view.failed.body.children.length;
      view.failedEmpty.hidden = shown > 0;
      view.failed.wrap.hidden = shown === 0;
      container.querySelector('#failed-note')?.toggleAttribute('hidden', shown === 0);
      renderFailedCount();
    } catch (error) {
      if (!cursor) failedLoadedFor = null; // try again on the next update
      if (isAbort(error) || error.status === 401) throw error;
      view.notice.show('error', `Could not load the failed messages: ${error.message}`);
    }
  }

  /** Show a failed message: its row updated in place, or a new row at its place in id order (the API's). */
  function putFailedRow(m) {
    const row = failedRow(m);
    const known = failedRows.get(m.id);
    failedRows.set(m.id, row);
    if (known) return known.replaceWith(row);
    const rowsShown = view.failed.body.children;
    const last = rowsShown[rowsShown.length - 1];
    // Pages come in id order, so the common case appends; only a merged first page inserts.
    const after = !last || !idAfter(last.dataset.messageId, m.id) ? null : [...rowsShown].find((tr) => idAfter(tr.dataset.messageId, m.id));
    view.failed.body.insertBefore(row, after);
  }

  view.failedMore.addEventListener('click', () => loadFailed(failedCursor).catch(() => {}));

  // --- loading and live updates ----------------------------------------------------------
  async function refresh() {
    try {
      update(await api(path, { signal }));
    } catch (error) {
      if (isAbort(error)) throw error;
      if (error.status === 404 || error.status === 422) notFound(); // unknown or malformed id
      else if (error.status !== 401) view.notice.show('error', `Could not refresh: ${error.message}`);
    }
  }

  function notFound() {
    stopped.abort();
    container.replaceChildren(
      h(
        'div',
        { className: 'card empty' },
        pageHeading('Campaign not found'),
        h('p', {}, 'It may have been created on another server, or the address is wrong.'),
        h('a', { className: 'btn', href: '#/campaigns' }, 'All campaigns'),
      ),
    );
  }

  // The chart's data: GET .../timeline, again during the run and once more at its end (see timeline.js).
  // Live counts continue from what each read holds.
  const timeline = new CampaignTimeline({
    chart: view.chart,
    path: `${path}/timeline`,
    signal,
    onSeed: (totals, at) => {
      last = { ...totals, at };
    },
  });

  // A private controller so "not found" can stop the stream without waiting for navigation.
  const stopped = new AbortController();
  signal.addEventListener('abort', () => stopped.abort(signal.reason), { once: true });
  const ticker = setInterval(() => {
    renderEta();
    if (campaign && !FINISHED.has(campaign.status)) view.chart.schedule(); // scroll the time axis
  }, 1000);
  stopped.signal.addEventListener('abort', () => {
    clearInterval(ticker);
    view.chart.dispose();
  });

  (async () => {
    try {
      // The campaign first: its start and end set the chart's edges before the timeline fills it.
      const { data, response } = await request(path, { signal });
      view.chart.setServerDate(response.headers.get('Date'));
      update(data);
    } catch (error) {
      if (error.status === 404 || error.status === 422) return notFound();
      throw error;
    }
    await followEvents(`/events/campaigns/${encodeURIComponent(id)}`, {
      signal: stopped.signal,
      onState: (state) => view.live.set(state),
      poll: refresh,
      onEvent: ({ event, data }) => event === 'campaign' && update(JSON.parse(data)),
    });
  })().catch((error) => {
    if (!isAbort(error) && error.status !== 401) view.notice.show('error', error.message);
  });
}

/** Static structure of the page; `update` fills it in. */
function buildLayout(container, id) {
  const title = pageHeading('Loading…');
  const badge = statusBadge('pending');
  const live = new LiveIndicator();
  const meta = h('dl', { className: 'meta' });
  const actions = h('div', { className: 'btn-row actions', id: 'campaign-actions', hidden: true });
  const confirm = h('div', { className: 'confirm-slot' });
  // Why the guard paused it: shown above the Resume button while it holds (see renderDeliverability).
  const guardReason = h('span', { id: 'campaign-paused-reason' });
  const guard = h(
    'div',
    { className: 'alert alert--warning guard-notice', id: 'campaign-guard', role: 'status', hidden: true },
    h('strong', {}, 'Paused by its guard: '),
    guardReason,
    h('span', { className: 'guard-notice__hint' }, 'Resume sends the rest; the guard then judges only what is sent after the resume.'),
  );
  const deliverability = {
    bounces: feedbackStat('Bounces', 'bounces'),
    complaints: feedbackStat('Complaints', 'complaints'),
    unsubscribes: feedbackStat('Unsubscribes', 'unsubscribes'),
  };
  const deliverabilitySection = h(
    'section',
    { className: 'card', 'aria-labelledby': 'deliverability-title', id: 'deliverability-section' },
    h('h2', { id: 'deliverability-title' }, 'Deliverability'),
    h('dl', { className: 'stats', id: 'campaign-deliverability' }, Object.values(deliverability).map((s) => s.el)),
  );
  const notice = new MessageArea('campaign-message');
  const bar = new ProgressBar({ label: 'Campaign progress' });
  const names = { total: 'Total', pending: 'Pending', queued: 'Queued', sending: 'Sending', sent: 'Sent', failed: 'Failed', skipped: 'Skipped', cancelled: 'Cancelled' };
  const stats = Object.fromEntries(Object.entries(names).map(([key, label]) => [key, stat(label, key)]));
  const eta = h('p', { className: 'eta', id: 'campaign-eta', 'aria-live': 'off' }, '—');
  const chart = new RateChart({ label: 'Messages per second' });
  const failed = table('Failed messages', ['Recipient', 'Attempts', 'Last error', 'Updated'], { id: 'failed-table', numeric: [1], cards: true });
  failed.wrap.classList.add('table-wrap--tall'); // a long list scrolls in its card, not the page
  const failedEmpty = h('p', { className: 'empty muted', id: 'failed-empty', hidden: true }, 'No failed messages.');
  const failedMore = h('button', { type: 'button', className: 'btn', hidden: true }, 'Show more');
  const failedCount = h('span', { className: 'muted card__subtitle' });
  failed.wrap.hidden = true;

  container.replaceChildren(
    h('nav', { className: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/campaigns' }, '← All campaigns')),
    h('div', { className: 'page-header' }, title, badge, live.el),
    meta,
    h('div', { className: 'toolbar' }, actions, confirm, guard),
    notice.el,
    h(
      'section',
      { className: 'card', 'aria-labelledby': 'progress-title' },
      h('h2', { id: 'progress-title' }, 'Progress'),
      bar.el,
      h('dl', { className: 'stats', id: 'campaign-stats' }, Object.values(stats).map((s) => s.el)),
      eta,
    ),
    deliverabilitySection,
    h('section', { className: 'card', 'aria-labelledby': 'rate-title' }, h('h2', { id: 'rate-title' }, 'Messages per second'), chart.el),
    h(
      'section',
      { className: 'card', 'aria-labelledby': 'failed-title', id: 'failed-section' },
      h('div', { className: 'card__header' }, h('h2', { id: 'failed-title' }, 'Failed messages'), failedCount),
      h(
        'p',
        { className: 'muted card__note', id: 'failed-note', hidden: true },
        'Each recipient opens its audit trail. ',
        h('a', { href: `#/dead-letters?campaignId=${encodeURIComponent(id)}`, id: 'failed-dead-letters' }, 'Dead letters of this campaign'),
        ' lists them with a redrive for one or all.',
      ),
      failed.wrap,
      failedEmpty,
      h('div', { className: 'card__footer' }, failedMore),
    ),
  );
  return { title, badge, live, meta, actions, confirm, guard, guardReason, notice, bar, stats, deliverability, deliverabilitySection, eta, chart, failed, failedEmpty, failedMore, failedCount };
}

/** A deliverability figure: its count, and its share of the messages sent. */
function feedbackStat(label, role) {
  const s = stat(label, role);
  s.note = h('span', { className: 'stat__note', dataset: { rate: role } });
  s.el.append(h('dd', { className: 'stat__sub' }, s.note));
  return s;
}

/**
 * Bounces, complaints and unsubscribes with their rates (`deliverability`, counted once per message), and the
 * guard's reason while it holds the campaign paused. Older servers send no `deliverability`: the card is hidden.
 */
function renderDeliverability(view, c) {
  const d = c.deliverability;
  view.deliverabilitySection.hidden = !d;
  const reason = d?.pausedReason || '';
  setText(view.guardReason, reason);
  view.guard.hidden = !(reason && c.status === 'paused');
  if (!d) return;
  // What the API's rates are of: messages attempted (sent, or failed, like a recipient refused with a 5xx).
  const sent = (c.sentCount || 0) + (c.failedCount || 0);
  const share = (rate, key) => {
    const note = view.deliverability[key].note;
    note.dataset.value = String(rate);
    setText(note, sent > 0 ? `${fmtShare(rate)} of ${fmtInt(sent)} sent` : 'nothing sent yet');
  };
  setStat(view.deliverability.bounces, d.bounces);
  setStat(view.deliverability.complaints, d.complaints);
  setStat(view.deliverability.unsubscribes, d.unsubscribes);
  share(d.bounceRate, 'bounces');
  share(d.complaintRate, 'complaints');
  share(sent > 0 ? d.unsubscribes / sent : 0, 'unsubscribes'); // the API gives no rate for these: the same ratio
}

function renderMeta(view, c) {
  const items = [
    ['Channel', c.channel],
    ['Subject', c.subject || '—'],
    ['Created', fmtDateTime(c.createdAt)],
  ];
  if (c.sendAt) items.push(['Scheduled for', fmtDateTime(c.sendAt)]);
  if (c.completedAt) items.push(['Finished', fmtDateTime(c.completedAt)]);
  replace(view.meta, items.map(([k, v]) => h('div', { className: 'meta__item' }, h('dt', {}, k), h('dd', {}, v))));
}

/** Where the campaign's chart begins: its creation, or its due time when it was scheduled for later. */
function runStart(c) {
  const created = Date.parse(c.createdAt);
  const due = c.sendAt ? Date.parse(c.sendAt) : NaN;
  return due > created ? due : created;
}

/** Message ids are decimal integers as strings: a longer one is larger. */
function idAfter(a, b) {
  const [x, y] = [String(a), String(b)];
  return x.length !== y.length ? x.length > y.length : x > y;
}

/** A failed message: its recipient opens the message's audit trail (#/notifications/<id>). */
function failedRow(m) {
  return cardRow({ dataset: { messageId: m.id } }, [
    h('td', { className: 'cell-full cell-addr' }, h('a', { href: `#/notifications/${encodeURIComponent(m.id)}`, className: 'message-link' }, address(m.recipient))),
    h('td', { className: 'num cell-inline', 'data-label': 'Attempts' }, fmtInt(m.attempts)),
    h('td', { className: 'cell-wrap cell-two', 'data-label': 'Last error' }, m.lastError || '—'),
    h('td', { className: 'nowrap cell-full cell-inline', 'data-label': 'Updated' }, fmtDateTime(m.updatedAt)),
  ]);
}

/** "About 1 min 20 s left at 95 msg/s", or what the status says instead. */
function etaText(c, rate) {
  const remaining = c.totalMessages - doneCount(c);
  if (FINISHED.has(c.status)) {
    const took = c.completedAt ? (Date.parse(c.completedAt) - Date.parse(c.createdAt)) / 1000 : null;
    return took === null ? 'Finished.' : `Finished in ${fmtDuration(took, { precise: true })}.`;
  }
  if (c.status === 'paused') return `Paused with ${fmtInt(remaining)} messages to go.`;
  if (c.status === 'scheduled') return c.sendAt ? `Starts ${fmtDateTime(c.sendAt)}.` : 'Scheduled.';
  if (remaining <= 0) return 'Finishing…';
  if (rate <= 0) return `${fmtInt(remaining)} messages to go; waiting for workers…`;
  return `About ${fmtDuration(remaining / rate)} left at ${fmtRate(rate)} msg/s (${fmtInt(remaining)} to go).`;
}
