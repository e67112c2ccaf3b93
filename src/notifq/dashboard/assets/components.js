// Small reusable pieces: status badges, the progress bar, the live indicator, alerts, fields.

import { fmtInt, h, percent, replace, setText } from './dom.js';

export const STATUS_LABELS = {
  scheduled: 'Scheduled',
  pending: 'Pending',
  processing: 'Processing',
  paused: 'Paused',
  completed: 'Completed',
  completed_with_failures: 'Completed with failures',
  cancelled: 'Cancelled',
};

/** A single message's statuses (notifications, campaign messages, dead letters). */
export const MESSAGE_STATUS_LABELS = {
  pending: 'Pending',
  queued: 'Queued',
  sending: 'Sending',
  sent: 'Sent',
  failed: 'Failed',
  cancelled: 'Cancelled',
  skipped: 'Skipped',
};

/** Why a subscriber's message was not sent (its `skipReason`). */
export const SKIP_REASONS = {
  opted_out: 'the subscriber opted out',
  no_address: 'no address for this channel',
  throttled: 'over the per-subscriber rate limit',
  duplicate: 'a duplicate (same dedup key)',
  erased: 'the subscriber was erased',
  suppressed: 'the address is on the suppression list',
};

/** Message statuses after which nothing happens on its own (a redrive can still send a failed one again). */
export const MESSAGE_FINISHED = new Set(['sent', 'failed', 'cancelled', 'skipped']);

/** A message's status pill (same look as a campaign's: the text carries the meaning). */
export function messageBadge(status) {
  return h(
    'span',
    { className: `badge badge--msg-${String(status).replace(/[^a-z_]/g, '')}`, dataset: { role: 'status-badge', status } },
    MESSAGE_STATUS_LABELS[status] || status,
  );
}

/** Campaign statuses in which no more messages will move on their own. */
export const FINISHED = new Set(['completed', 'completed_with_failures', 'cancelled']);

/** A coloured status pill; the text carries the meaning, colour only reinforces it. */
export function statusBadge(status) {
  const badge = h('span', { className: 'badge', dataset: { role: 'status-badge' } });
  updateStatusBadge(badge, status);
  return badge;
}

export function updateStatusBadge(badge, status) {
  badge.className = `badge badge--${String(status).replace(/[^a-z_]/g, '')}`;
  badge.dataset.status = status;
  setText(badge, STATUS_LABELS[status] || status);
}

/** Messages that reached an end state (sent, failed, cancelled or skipped). */
export function doneCount(campaign) {
  const p = campaign.progress || {};
  return (p.sent || 0) + (p.failed || 0) + (p.cancelled || 0) + (p.skipped || 0);
}

/**
 * A stacked progress bar (sent, failed, skipped, cancelled) with its percentage.
 * Segment widths are set through the CSSOM (element.style.width), which the CSP allows,
 * unlike style="" attributes.
 */
export class ProgressBar {
  constructor({ label = 'Progress', compact = false } = {}) {
    this.sent = h('span', { className: 'progress__seg progress__seg--sent' });
    this.failed = h('span', { className: 'progress__seg progress__seg--failed' });
    this.skipped = h('span', { className: 'progress__seg progress__seg--skipped' });
    this.cancelled = h('span', { className: 'progress__seg progress__seg--cancelled' });
    this.track = h(
      'div',
      { className: 'progress__track', role: 'progressbar', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100' },
      this.sent,
      this.failed,
      this.skipped,
      this.cancelled,
    );
    this.text = h('span', { className: 'progress__text', dataset: { role: 'percent' } });
    this.el = h('div', { className: compact ? 'progress progress--compact' : 'progress' }, this.track, this.text);
  }

  /** Show a campaign's progress (counts by status and total). */
  update(progress, total) {
    const p = progress || {};
    const done = (p.sent || 0) + (p.failed || 0) + (p.cancelled || 0) + (p.skipped || 0);
    const pct = percent(done, total);
    this.sent.style.width = `${percent(p.sent || 0, total)}%`;
    this.failed.style.width = `${percent(p.failed || 0, total)}%`;
    this.skipped.style.width = `${percent(p.skipped || 0, total)}%`;
    this.cancelled.style.width = `${percent(p.cancelled || 0, total)}%`;
    const shown = pct > 0 && pct < 1 ? '<1' : String(Math.floor(pct));
    setText(this.text, `${shown}%`);
    this.el.dataset.done = String(done);
    this.el.dataset.total = String(total);
    this.track.setAttribute('aria-valuenow', String(Math.floor(pct)));
    this.track.setAttribute('aria-valuetext', `${Math.floor(pct)}% — ${fmtInt(done)} of ${fmtInt(total)} finished`);
  }

  /** A plain fraction (load test): `part` of `whole`, one colour. */
  updateSimple(part, whole) {
    const pct = percent(part, whole);
    this.sent.style.width = `${pct}%`;
    this.failed.style.width = '0%';
    this.skipped.style.width = '0%';
    this.cancelled.style.width = '0%';
    setText(this.text, `${Math.floor(pct)}%`);
    this.track.setAttribute('aria-valuenow', String(Math.floor(pct)));
    this.track.setAttribute('aria-valuetext', `${fmtInt(part)} of ${fmtInt(whole)}`);
  }
}

const LIVE_LABELS = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', stopped: 'Stopped' };

/** "Live" / "Reconnecting…": tells the reader whether the numbers are moving on their own. */
export class LiveIndicator {
  constructor() {
    this.el = h('span', { className: 'live', dataset: { role: 'live-indicator' } });
    this.set('connecting');
  }

  set(state) {
    this.el.dataset.state = state;
    this.el.className = `live live--${state}`;
    setText(this.el, LIVE_LABELS[state] || state);
  }
}

/** An alert box; `role=alert` for errors (announced at once), `status` for notices. */
export function alertBox(kind, ...content) {
  return h('div', { className: `alert alert--${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...content);
}

/** A region that shows one message at a time (or nothing). */
export class MessageArea {
  constructor(id) {
    this.el = h('div', { id, className: 'message-area' });
  }

  show(kind, ...content) {
    replace(this.el, alertBox(kind, ...content));
  }

  clear() {
    this.el.replaceChildren();
  }
}

/**
 * A labelled form field: the <label> is tied to the control by id, and the hint and error
 * paragraphs by aria-describedby, so screen readers read them with the field.
 */
export function field({ id, label, control, hint = null, className = '' }) {
  control.id = id;
  const hintEl = hint ? h('p', { className: 'field__hint', id: `${id}-hint` }, hint) : null;
  const errorEl = h('p', { className: 'field__error', id: `${id}-error`, hidden: true });
  const describedBy = [hintEl ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(' ');
  control.setAttribute('aria-describedby', describedBy);
  const wrapper = h('div', { className: `field ${className}`.trim() }, h('label', { for: id }, label), hintEl, control, errorEl);
  return { wrapper, control, errorEl };
}

/** Show (or with no content, clear) a field's error. */
export function setFieldError(f, ...content) {
  const has = content.length > 0;
  replace(f.errorEl, ...content);
  f.errorEl.hidden = !has;
  if (has) f.control.setAttribute('aria-invalid', 'true');
  else f.control.removeAttribute('aria-invalid');
  f.wrapper.classList.toggle('field--invalid', has);
}

/**
 * A table inside its own horizontally scrollable container (keeps the page itself from overflowing).
 *
 * `cards`: on phones the rows are laid out as cards (`display: grid` on <tr>, see app.css). Some
 * browsers (WebKit) then drop the elements' implicit table roles, so screen readers would no longer
 * announce a table, rows or column headers. Explicit ARIA roles keep them; the rows added to such a
 * table must carry role=row and role=cell too (see `cardRow`).
 */
export function table(caption, headers, { id = null, numeric = [], cards = false } = {}) {
  const role = (name) => (cards ? name : null);
  const body = h('tbody', { role: role('rowgroup') });
  const head = h(
    'thead',
    { role: role('rowgroup') },
    h(
      'tr',
      { role: role('row') },
      headers.map((title, i) => h('th', { scope: 'col', role: role('columnheader'), className: numeric.includes(i) ? 'num' : null }, title)),
    ),
  );
  const tableEl = h(
    'table',
    { className: cards ? 'table table--cards' : 'table', id, role: role('table') },
    caption ? h('caption', { className: 'sr-only' }, caption) : null,
    head,
    body,
  );
  // tabindex lets keyboard users scroll a wide table; the label names the region.
  const wrap = h('div', { className: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption || 'Table' }, tableEl);
  return { wrap, table: tableEl, body };
}

/** A row for a `cards` table: role=row and role=cell (rowheader) survive the phone layout (see `table`). */
export function cardRow(props, cells) {
  for (const cell of cells) cell.setAttribute('role', cell.tagName === 'TH' ? 'rowheader' : 'cell');
  return h('tr', { ...props, role: 'row' }, cells);
}

/** A labelled figure: <dl> entries like "Sent 1,234". */
export function stat(label, role) {
  const value = h('dd', { className: 'stat__value', dataset: { count: role } }, '—');
  return { el: h('div', { className: `stat stat--${role}` }, h('dt', { className: 'stat__label' }, label), value), value };
}

/** Set a stat's number (formatted for reading, raw in data-value for scripts and tests). */
export function setStat(s, n) {
  s.value.dataset.value = String(n);
  setText(s.value, fmtInt(n));
}

/** A page heading that receives focus after navigation (screen readers announce the new page). */
export function pageHeading(text) {
  return h('h1', { className: 'page-title', tabindex: '-1' }, text);
}

/**
 * Ask before doing something that cannot be undone, inline (a native confirm() would block live updates):
 * the question and two buttons in `slot`, focus on the "yes" button, Escape or "no" backs out and gives focus
 * back to `returnTo`. Resolves true (yes) or false.
 */
export function confirmInline(slot, { text, yes, no = 'Keep them', returnTo = null, id = 'confirm-yes' }) {
  return new Promise((resolve) => {
    const textId = `${id}-text`;
    const yesButton = h('button', { type: 'button', className: 'btn btn--danger', id }, yes);
    const noButton = h('button', { type: 'button', className: 'btn' }, no);
    const box = h(
      'div',
      { className: 'confirm', role: 'group', 'aria-labelledby': textId },
      h('p', { id: textId }, text),
      h('div', { className: 'btn-row' }, yesButton, noButton),
    );
    const done = (answer) => {
      box.remove();
      if (!answer && returnTo?.isConnected) returnTo.focus();
      resolve(answer);
    };
    yesButton.addEventListener('click', () => done(true));
    noButton.addEventListener('click', () => done(false));
    box.addEventListener('keydown', (event) => event.key === 'Escape' && done(false));
    slot.replaceChildren(box);
    yesButton.focus();
  });
}

/** A <select> of `[value, label]` options, the first selected unless `value` names another. */
export function select(name, options, value = '') {
  return h(
    'select',
    { name },
    options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)),
  );
}

/** The options of a channel filter: any, then each channel. */
export const CHANNEL_OPTIONS = [
  ['', 'Any channel'],
  ['email', 'Email'],
  ['sms', 'SMS'],
  ['push', 'Push'],
  ['inapp', 'In-app'],
];

/**
 * A secret the API shows only once (a webhook's signing secret, an API key): a read-only field with a Copy
 * button, until the reader says it is saved. `id` names the panel; its parts are `<id>-value`, `-copy`,
 * `-copied`, `-done`, `-title` and `-hint`. `title` and `hint` may hold elements; `onDone` runs after the
 * panel (and the secret with it) has left `slot`.
 */
export function showSecretOnce(slot, { id, title, hint, label, secret, onDone }) {
  const value = h('input', { type: 'text', id: `${id}-value`, className: 'wh-secret__value', readonly: true, spellcheck: 'false', autocomplete: 'off', 'aria-describedby': `${id}-hint`, value: secret });
  const copy = h('button', { type: 'button', className: 'btn btn--primary', id: `${id}-copy` }, 'Copy');
  const copied = h('span', { className: 'muted', id: `${id}-copied`, role: 'status' });
  const done = h('button', { type: 'button', className: 'btn', id: `${id}-done` }, 'I have saved it');
  const panel = h(
    'section',
    { className: 'card wh-secret', id, 'aria-labelledby': `${id}-title` },
    h('h2', { id: `${id}-title` }, ...[title].flat()),
    h('p', { className: 'alert alert--warning', id: `${id}-hint` }, h('strong', {}, 'Copy it now: it is shown only this once. '), hint),
    h('div', { className: 'wh-secret__row' }, h('label', { className: 'sr-only', for: `${id}-value` }, label), value, copy),
    h('div', { className: 'btn-row wh-secret__done' }, done, copied),
  );
  copy.addEventListener('click', async () => {
    value.focus();
    value.select();
    try {
      await navigator.clipboard.writeText(secret);
      setText(copied, 'Copied to the clipboard.');
    } catch {
      setText(copied, 'Selected: press Ctrl+C (⌘C on a Mac) to copy it.');
    }
  });
  value.addEventListener('focus', () => value.select());
  done.addEventListener('click', () => {
    slot.replaceChildren(); // the secret leaves the page
    onDone();
  });
  slot.replaceChildren(panel);
  value.focus();
}
