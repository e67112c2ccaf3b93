// #/notifications/<id>: one message's audit trail (GET /notifications/{id}), single sends and campaign messages
// alike: its delivery (attempts, retries, provider, the provider's message id, the last error) and every event
// with its time since acceptance. A failed one can be sent again (redrive), a held single one cancelled, each
// after an inline confirmation. Read again every 2 s until it reaches an end.

import { api } from './api.js';
import { MESSAGE_FINISHED, MessageArea, SKIP_REASONS, cardRow, confirmInline, messageBadge, pageHeading, table } from './components.js';
import { address, fmtDateTime, fmtDuration, fmtInt, h, isAbort, replace, setText, sleep } from './dom.js';

const DETAIL_REFRESH_MS = 2000;

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
  delivered: 'Delivered',
  read: 'Read',
  bounced: 'Bounced',
  soft_bounced: 'Soft bounce',
  complained: 'Complaint',
  unsubscribed: 'Unsubscribed',
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
    if (n.subscriber) figures.push(['Subscriber', n.subscriber, 'subscriber']);
    if (n.category) figures.push(['Category', n.category, 'category']);
    if (n.skipReason) figures.push(['Skipped because', SKIP_REASONS[n.skipReason] || n.skipReason, 'skip-reason']);
    if (n.channel === 'inapp') {
      figures.push(['Delivered (ACK)', n.deliveredAt ? fmtDateTime(n.deliveredAt) : '—', 'delivered-at']);
      figures.push(['Read', n.readAt ? fmtDateTime(n.readAt) : '—', 'read-at']);
    }
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
