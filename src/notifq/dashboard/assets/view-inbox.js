// #/inbox: the in-app channel as a subscriber's app sees it. Pick a subscriber (GET /subscribers) or create one
// (PUT /subscribers/{id}), get an inbox token for it (POST /subscribers/{id}/token) and open its inbox with
// inbox.js, the client other sites embed: notifications arrive live, newest first; "Mark read" sends a READ
// frame, "Mark all read" is POST /inbox/read-all. The test form sends one (POST /notifications, channel inapp),
// so an operator sees the round trip: API, queue, worker, Redis, /ws, this page.
//
// The subscriber's token is not the admin's session: it lives in this view only (never stored), travels in the
// AUTH frame and the Authorization header of /inbox calls, and a 401 with it does not log the admin out.
// The open subscriber is in the address (#/inbox?subscriber=u-42), so a reload opens it again.

import { ApiError, api, toApiError } from './api.js';
import { LiveIndicator, MessageArea, cardRow, field, pageHeading, setFieldError, table } from './components.js';
import { fmtDateTime, fmtDuration, fmtInt, h, isAbort, replace, setText } from './dom.js';
import { NotifqInbox } from './inbox.js';

const SUBSCRIBER_ID = /^[A-Za-z0-9._:@-]{1,128}$/;
const LIST_LIMIT = 500; // subscribers offered in the list (the API's largest page)
const INBOX_PAGE = 50; // notifications loaded over HTTP when an inbox opens (the live ones come on top)
const TOKEN_MARGIN_MS = 60_000; // a token this close to its expiry is replaced before connecting
const COUNT_DELAY_MS = 300; // after an arrival, the unread count is read again this much later
const READ_COUNT_DELAY_MS = 1000; // after a READ frame (no answer; written within ~50 ms): counted at once, checked later
const ARRIVAL_WAIT_MS = 10_000; // a test notification not here by then: say what may be wrong
const STATUS_TO_INDICATOR = { connecting: 'connecting', live: 'live', reconnecting: 'reconnecting' };

export function renderInbox(container, { signal, query }) {
  const messages = new MessageArea('inbox-message');
  const picker = subscriberPicker();
  const send = sendForm();
  const live = new LiveIndicator();
  const unread = h('span', { className: 'muted card__subtitle', id: 'inbox-unread', 'aria-live': 'polite' });
  const readAll = h('button', { type: 'button', className: 'btn btn--small', id: 'inbox-read-all' }, 'Mark all read');
  const inboxTitle = h('h2', { id: 'inbox-title' }, 'Inbox');
  const list = table('Notifications in the inbox', ['Notification', 'Category', 'Sent', 'Status', 'Action'], { id: 'inbox-table', cards: true });
  const empty = h('p', { className: 'empty muted', id: 'inbox-empty' });
  const announce = h('p', { className: 'sr-only', 'aria-live': 'polite', id: 'inbox-announce' });
  const inboxCard = h(
    'section',
    { className: 'card card--flush', id: 'inbox-card', 'aria-labelledby': 'inbox-title', hidden: true },
    h('div', { className: 'card__header card__header--pad' }, inboxTitle, h('div', { className: 'page-header' }, live.el, unread, readAll)),
    list.wrap,
    empty,
    announce,
  );
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('Inbox')),
    h('p', { className: 'muted page-intro' }, 'Open a subscriber’s in-app inbox the way their app would (over /ws, with /inbox.js), and send them a test notification.'),
    messages.el,
    h('div', { className: 'form__row' }, picker.el, send.el),
    inboxCard,
  );

  let session = null; // the open inbox: {id, inbox, issued, rows, sent}
  signal.addEventListener('abort', () => session?.inbox?.close(), { once: true });

  // --- the subscriber -------------------------------------------------------------------------------------------

  async function loadSubscribers(selected = '') {
    try {
      const page = await api(`/subscribers?limit=${LIST_LIMIT}`, { signal });
      picker.offer(page.items, Boolean(page.nextCursor), selected);
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      picker.offer([], null, selected); // null: whether more exist is unknown
      messages.show('error', `Could not list subscribers: ${error.message}`);
    }
  }

  picker.el.addEventListener('submit', async (event) => {
    event.preventDefault();
    messages.clear();
    const choice = picker.choice();
    if (choice.error) return;
    picker.busy(true);
    try {
      if (choice.create && !(await create(choice.id, choice.email))) return;
      await open(choice.id);
    } finally {
      picker.busy(false);
    }
  });

  /** PUT a new subscriber; false (with the error shown) when it exists already or the API refuses it. */
  async function create(id, email) {
    const path = `/subscribers/${encodeURIComponent(id)}`;
    // A PUT replaces a whole profile: never send one for a subscriber that exists. The list answers that when it
    // is whole; past LIST_LIMIT, a GET does (its 404 is the expected answer).
    let exists = picker.has(id);
    if (!exists && !picker.complete()) {
      try {
        await api(path, { signal });
        exists = true;
      } catch (error) {
        if (isAbort(error) || error.status === 401) return false;
        if (error.status !== 404) return picker.showError(error, messages);
      }
    }
    if (exists) {
      setFieldError(picker.f.id, 'This subscriber exists already: choose it under “Existing subscriber”.');
      picker.f.id.control.focus();
      return false;
    }
    try {
      await api(path, { method: 'PUT', body: email ? { email } : {}, signal });
    } catch (error) {
      if (isAbort(error) || error.status === 401) return false;
      return picker.showError(error, messages);
    }
    await loadSubscribers(id);
    return true;
  }

  /** Open subscriber `id`'s inbox in place of the one on screen (which stays if no token can be had). */
  async function open(id) {
    const opening = { id, issued: null, rows: new Map(), sent: new Map() };
    try {
      await issueToken(opening);
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      messages.show('error', `Could not get an inbox token for ${id}: ${error.message}`);
      return;
    }
    const previous = session;
    session = opening;
    previous?.inbox?.close();
    history.replaceState(null, '', `#/inbox?subscriber=${encodeURIComponent(id)}`);
    picker.opened(opening);
    setText(inboxTitle, `Inbox of ${id}`);
    list.body.replaceChildren();
    setText(unread, '');
    delete unread.dataset.count;
    showEmpty();
    inboxCard.hidden = false;
    send.enable(id);
    await loadPage(opening);
    if (session !== opening) return;
    opening.inbox = new NotifqInbox({
      token: () => issueToken(opening).then((issued) => issued.token),
      onNotification: (n, { replayed }) => arrived(opening, n, replayed),
      onReady: () => refreshCount(opening),
      onStatus: (status, detail) => statusChanged(opening, status, detail),
      onError: (error) => isAbort(error) || messages.show('error', `Inbox: ${error.message}`),
    });
    opening.inbox.connect();
    picker.opened(opening);
  }

  /** The subscriber's token, issued again when it is (nearly) expired. */
  async function issueToken(s) {
    if (!s.issued || Date.parse(s.issued.expiresAt) - Date.now() < TOKEN_MARGIN_MS) {
      s.issued = await api(`/subscribers/${encodeURIComponent(s.id)}/token`, { method: 'POST', signal });
      if (session === s) picker.opened(s);
    }
    return s.issued;
  }

  /** An /inbox call with the subscriber's token (not the admin's: api.js would send that one). */
  async function inboxCall(s, path, method = 'GET') {
    const { token } = await issueToken(s);
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
        signal,
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new ApiError(0, 'network_error', 'The server could not be reached. Check your connection.');
    }
    if (!response.ok) throw await toApiError(response);
    return response.json();
  }

  /** The newest notifications already in the inbox (delivered before, read or not): live ones come on top. */
  async function loadPage(s) {
    try {
      const page = await inboxCall(s, `/inbox?limit=${INBOX_PAGE}`);
      if (session !== s) return;
      for (const n of page.items) addRow(s, n);
      showCount(page.unreadCount);
    } catch (error) {
      if (!isAbort(error)) messages.show('error', `Could not load the inbox: ${error.message}`);
    }
  }

  // --- the inbox ------------------------------------------------------------------------------------------------

  function arrived(s, n, replayed) {
    if (session !== s) return;
    const known = s.rows.has(n.id);
    if (!known) addRow(s, { ...n, readAt: null });
    refreshCount(s);
    if (!known && !replayed) setText(announce, `New notification: ${n.subject || n.body || n.id}`);
    const sent = s.sent.get(n.id);
    if (sent) {
      clearTimeout(sent.timer);
      s.sent.delete(n.id);
      roundTrip(n.id, performance.now() - sent.at);
    }
  }

  function roundTrip(id, ms) {
    send.messages.show('success', `Notification ${id} arrived live, ${fmtDuration(ms / 1000, { precise: true })} after it was sent.`);
  }

  function addRow(s, n) {
    if (s.rows.has(n.id)) return;
    const row = notificationRow(n, () => markRead(s, n.id));
    row.at = performance.now();
    s.rows.set(n.id, row);
    // Newest (largest id) first; a replayed older one goes to its place.
    const after = [...list.body.children].find((tr) => newer(n.id, tr.dataset.notificationId));
    list.body.insertBefore(row.tr, after || null);
    showEmpty();
  }

  function showEmpty() {
    const none = list.body.children.length === 0;
    list.wrap.hidden = none;
    empty.hidden = !none;
    readAll.hidden = none;
    if (session) {
      replace(
        empty,
        `No notifications for ${session.id} yet. Send one with the form, or from your backend: `,
        h('code', {}, `POST /notifications {"channel": "inapp", "subscriber": "${session.id}", …}`),
      );
    }
  }

  function markRead(s, id) {
    const row = s.rows.get(id);
    const focused = row?.tr.contains(document.activeElement);
    s.inbox?.read(id);
    if (row && row.tr.dataset.read === 'false') showCount(Math.max(0, Number(unread.dataset.count || 1) - 1));
    row?.setRead(true);
    if (focused) nextFocus();
    refreshCount(s, READ_COUNT_DELAY_MS);
  }

  /** After "Mark read" removed the button that had focus: the next unread one, else "Mark all read", else the list. */
  function nextFocus() {
    const next = list.body.querySelector('button[data-read-id]:not([hidden])');
    (next || (readAll.hidden ? list.wrap : readAll)).focus();
  }

  readAll.addEventListener('click', async () => {
    const s = session;
    if (!s) return;
    readAll.disabled = true;
    try {
      const { updated } = await inboxCall(s, '/inbox/read-all', 'POST');
      if (session !== s) return;
      for (const row of s.rows.values()) row.setRead(true);
      messages.show('success', updated ? `${fmtInt(updated)} notification${updated === 1 ? '' : 's'} marked read.` : 'Everything was read already.');
      showCount(0);
    } catch (error) {
      if (!isAbort(error)) messages.show('error', `Could not mark them read: ${error.message}`);
    } finally {
      readAll.disabled = false;
    }
  });

  /** The unread count of the whole inbox (not only the rows shown), read again shortly after a change. */
  function refreshCount(s, delay = COUNT_DELAY_MS) {
    clearTimeout(s.countTimer);
    s.countTimer = setTimeout(async () => {
      if (session !== s || signal.aborted) return;
      try {
        const page = await inboxCall(s, '/inbox?unread=true&limit=1');
        if (session === s) showCount(page.unreadCount);
      } catch {
        // The next change tries again; the rows are right either way.
      }
    }, delay);
  }

  function showCount(n) {
    unread.dataset.count = String(n);
    setText(unread, `${fmtInt(n)} unread`);
  }

  function statusChanged(s, status, detail) {
    if (session !== s) return;
    live.set(STATUS_TO_INDICATOR[status] || 'stopped');
    if (status === 'live' && s.troubled) {
      s.troubled = false;
      messages.clear();
    } else if (status === 'reconnecting' && detail.attempt > 1) {
      s.troubled = true;
      messages.show('info', `The inbox connection dropped; trying again in ${fmtDuration(detail.delay / 1000, { precise: true })}.`);
    } else if (status === 'unauthorized' && detail.reason === 'token expired' && Date.now() - (s.renewed || 0) > TOKEN_MARGIN_MS) {
      s.issued = null;
      s.renewed = Date.now(); // once a minute at most: a server whose clock runs ahead would refuse every new token
      s.inbox.connect(); // with a new token (the token function issues one)
    } else if (status === 'unauthorized') {
      s.issued = null; // the next "Open inbox" asks for a new token
      messages.show('error', `The inbox refused the token (${detail.reason || 'unauthorized'}). Open the inbox again for a new one.`);
    } else if (status === 'forbidden') {
      messages.show('error', `${s.id} was erased: its inbox is closed.`);
    }
  }

  // --- sending a test notification ------------------------------------------------------------------------------

  send.el.addEventListener('submit', async (event) => {
    event.preventDefault();
    const s = session;
    if (!s) return;
    send.clearErrors();
    send.messages.clear();
    const body = { channel: 'inapp', subscriber: s.id, ...send.values() };
    send.busy(true);
    const at = performance.now();
    try {
      const accepted = await api('/notifications', { method: 'POST', body, signal });
      const id = String(accepted.id);
      if (session !== s) return;
      const row = s.rows.get(id);
      if (row) return roundTrip(id, row.at - at); // it came over the socket before the answer did
      const timer = setTimeout(() => notArrived(s, id), ARRIVAL_WAIT_MS);
      s.sent.set(id, { at, timer });
      send.messages.show('info', `Notification ${id} accepted; waiting for a worker to deliver it…`);
    } catch (error) {
      if (!isAbort(error) && error.status !== 401) send.showError(error);
    } finally {
      send.busy(false);
    }
  });

  function notArrived(s, id) {
    if (session !== s || !s.sent.has(id)) return;
    s.sent.delete(id);
    send.messages.show(
      'info',
      `Notification ${id} has not arrived after ${ARRIVAL_WAIT_MS / 1000} s. Is a worker running (notifq worker)? `,
      h('a', { href: `#/notifications/${encodeURIComponent(id)}` }, 'Its audit trail'),
      ' says what happened to it.',
    );
  }

  signal.addEventListener('abort', () => {
    if (!session) return;
    clearTimeout(session.countTimer);
    for (const { timer } of session.sent.values()) clearTimeout(timer);
  });

  const wanted = query.get('subscriber') || '';
  loadSubscribers(wanted).then(() => {
    if (wanted && SUBSCRIBER_ID.test(wanted) && !signal.aborted) open(wanted);
  });
}

/** True when notification id `a` is newer (larger) than `b`: ids are 64-bit, compared as digit strings. */
function newer(a, b) {
  return a.length !== b.length ? a.length > b.length : a > b;
}

/** The subscriber card: an existing one from the list, or a new one (id and optional email). */
function subscriberPicker() {
  const f = {
    existing: field({ id: 'inbox-existing', label: 'Choose a subscriber', control: h('select', { name: 'subscriber' }, h('option', { value: '' }, 'Loading…')) }),
    id: field({
      id: 'inbox-new-id',
      label: 'Subscriber id',
      hint: 'Your user id: 1 to 128 of A-Z a-z 0-9 . _ : @ -',
      control: h('input', { type: 'text', name: 'id', maxlength: '128', autocomplete: 'off', spellcheck: 'false', placeholder: 'u-42' }),
    }),
    email: field({
      id: 'inbox-new-email',
      label: 'Email (optional)',
      control: h('input', { type: 'email', name: 'email', maxlength: '254', autocomplete: 'off', spellcheck: 'false' }),
    }),
  };
  const modes = [
    ['existing', 'Existing subscriber'],
    ['new', 'New subscriber'],
  ];
  const radios = modes.map(([value, label]) =>
    h('label', { className: 'choice' }, h('input', { type: 'radio', name: 'mode', value, id: `inbox-mode-${value}`, checked: value === 'existing' }), label),
  );
  // Shown when the list is cut at LIST_LIMIT; read with the select (aria-describedby).
  const existingHint = h('p', { className: 'field__hint', id: 'inbox-existing-hint', hidden: true });
  f.existing.control.before(existingHint);
  f.existing.control.setAttribute('aria-describedby', `inbox-existing-hint ${f.existing.control.getAttribute('aria-describedby')}`);
  const existingPanel = h('div', {}, f.existing.wrapper);
  const newPanel = h('div', {}, f.id.wrapper, f.email.wrapper);
  const submit = h('button', { type: 'submit', className: 'btn btn--primary', id: 'inbox-open' }, 'Open inbox');
  // Once an inbox is open: what its app would hold (a token, and where the socket goes), and how an app gets them.
  const details = h('dl', { className: 'meta', id: 'inbox-connection' });
  const howTo = h(
    'p',
    { className: 'muted card__note' },
    'An app does the same: its backend asks for a token (POST /subscribers/{id}/token), its page loads /inbox.js and connects. See docs/inbox-js.md.',
  );
  const openedPart = h('div', { hidden: true }, h('h3', { className: 'label' }, 'Connection'), details, howTo);
  const el = h(
    'form',
    { className: 'card', id: 'inbox-subscriber-form', novalidate: true, 'aria-labelledby': 'inbox-subscriber-title' },
    h('h2', { id: 'inbox-subscriber-title' }, 'Subscriber'),
    h('div', { className: 'choices', role: 'radiogroup', 'aria-labelledby': 'inbox-subscriber-title' }, radios),
    existingPanel,
    newPanel,
    h('div', { className: 'btn-row' }, submit),
    openedPart,
  );
  const mode = () => el.querySelector('input[name="mode"]:checked').value;
  const show = () => {
    existingPanel.hidden = mode() !== 'existing';
    newPanel.hidden = mode() !== 'new';
  };
  const setMode = (value) => {
    el.querySelector(`#inbox-mode-${value}`).checked = true;
    show();
  };
  el.addEventListener('change', (event) => event.target.name === 'mode' && show());
  show();
  let known = new Set();
  let whole = false;

  return {
    el,
    f,
    /** Whether `id` is in the list; `complete()`: whether the list holds every subscriber. */
    has: (id) => known.has(id),
    complete: () => whole,
    /** Fill the list (`more`: the API has more than these; null: unknown); with none, offer the "new" form instead. */
    offer(items, more, selected) {
      const select = f.existing.control;
      const ids = items.map((s) => s.id);
      known = new Set(ids);
      whole = more === false;
      if (selected && !ids.includes(selected)) items = [{ id: selected }, ...items];
      replace(select, items.map((s) => h('option', { value: s.id, selected: s.id === selected }, s.email ? `${s.id} (${s.email})` : s.id)));
      select.disabled = items.length === 0;
      if (!items.length) select.append(h('option', { value: '' }, 'No subscribers yet'));
      existingHint.hidden = !more;
      setText(existingHint, `The first ${fmtInt(items.length)} subscribers, in id order. Open any other with #/inbox?subscriber=<id>.`);
      setMode(items.length ? 'existing' : 'new');
    },
    /** The chosen subscriber, or {error} (shown under its field). */
    choice() {
      for (const item of Object.values(f)) setFieldError(item);
      if (mode() === 'existing') {
        const id = f.existing.control.value;
        if (!id) {
          setFieldError(f.existing, 'Choose a subscriber, or create one under “New subscriber”.');
          return { error: true };
        }
        return { id, create: false };
      }
      const id = f.id.control.value.trim();
      const email = f.email.control.value.trim();
      if (!SUBSCRIBER_ID.test(id)) {
        setFieldError(f.id, id ? 'Use 1 to 128 of A-Z a-z 0-9 . _ : @ - (no spaces).' : 'Enter an id for the subscriber.');
        f.id.control.focus();
        return { error: true };
      }
      return { id, email, create: true };
    },
    busy(on) {
      submit.disabled = on;
      setText(submit, on ? 'Opening…' : 'Open inbox');
    },
    /** Show the open inbox's subscriber, socket address and token expiry. */
    opened(s) {
      const items = [
        ['Subscriber', s.id],
        ['Socket', s.inbox ? h('span', { className: 'mono' }, s.inbox.url) : '—'],
        ['Token expires', fmtDateTime(s.issued?.expiresAt)],
      ];
      replace(details, items.map(([k, v]) => h('div', { className: 'meta__item' }, h('dt', {}, k), h('dd', {}, v))));
      openedPart.hidden = false;
    },
    /** An API error under the field it names (id, email), else above the forms; returns false. */
    showError(error, messages) {
      const name = error.details?.field || '';
      const target = name === 'id' ? f.id : name === 'email' ? f.email : null;
      if (error instanceof ApiError && error.status === 422 && target) {
        setFieldError(target, error.message);
        target.control.focus();
      } else messages.show('error', `Could not create the subscriber: ${error.message}`);
      return false;
    },
  };
}

/** The test-notification card: its fields appear once an inbox is open. */
function sendForm() {
  const f = {
    subject: field({
      id: 'inbox-send-subject',
      label: 'Subject',
      control: h('input', { type: 'text', name: 'subject', maxlength: '998', autocomplete: 'off', value: 'Test notification' }),
    }),
    body: field({
      id: 'inbox-send-body',
      label: 'Message',
      control: h('textarea', { name: 'body', rows: '2' }, 'Hello from the notifq dashboard.'),
    }),
    category: field({
      id: 'inbox-send-category',
      label: 'Category (optional)',
      control: h('input', { type: 'text', name: 'category', maxlength: '64', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. comments' }),
    }),
  };
  const messages = new MessageArea('inbox-send-message');
  const submit = h('button', { type: 'submit', className: 'btn btn--primary', id: 'inbox-send' }, 'Send');
  const forWhom = h('p', { className: 'muted card__note', id: 'inbox-send-for' }, 'Open a subscriber’s inbox first.');
  const fields = h('div', { hidden: true }, f.subject.wrapper, f.body.wrapper, f.category.wrapper, messages.el, h('div', { className: 'btn-row' }, submit));
  const el = h(
    'form',
    { className: 'card', id: 'inbox-send-form', novalidate: true, 'aria-labelledby': 'inbox-send-title' },
    h('h2', { id: 'inbox-send-title' }, 'Send a test notification'),
    forWhom,
    fields,
  );
  const fieldFor = { subject: f.subject, body: f.body, category: f.category };

  return {
    el,
    messages,
    enable(id) {
      fields.hidden = false;
      setText(forWhom, `To ${id}, on the in-app channel (POST /notifications).`);
    },
    values() {
      const out = { body: f.body.control.value };
      if (f.subject.control.value.trim()) out.subject = f.subject.control.value;
      if (f.category.control.value.trim()) out.category = f.category.control.value.trim();
      return out;
    },
    busy(on) {
      submit.disabled = on;
      setText(submit, on ? 'Sending…' : 'Send');
    },
    clearErrors() {
      for (const item of Object.values(f)) setFieldError(item);
    },
    showError(error) {
      const target = error.status === 422 ? fieldFor[error.details?.field] : null;
      if (target) {
        setFieldError(target, error.message);
        target.control.focus();
      } else messages.show('error', `Could not send: ${error.message}`);
    },
  };
}

/** A notification's row (a card on phones): read ones are faded, unread ones carry an "Unread" badge and a button. */
function notificationRow(n, onRead) {
  const badge = h('span', { className: 'badge', dataset: { role: 'read-state' } });
  const button = h('button', { type: 'button', className: 'btn btn--small', dataset: { readId: n.id } }, 'Mark read');
  button.setAttribute('aria-label', `Mark “${n.subject || n.body || n.id}” read`);
  button.addEventListener('click', onRead);
  const text = h(
    'td',
    { className: 'cell-full cell-wrap' },
    h('div', { className: 'cell-name' }, n.subject || '(no subject)'),
    n.body ? h('div', {}, n.body) : null,
    n.data ? h('div', { className: 'mono muted' }, JSON.stringify(n.data)) : null,
  );
  const tr = cardRow({ dataset: { notificationId: n.id } }, [
    text,
    h('td', { 'data-label': 'Category' }, n.category || '—'),
    h('td', { className: 'nowrap cell-two', 'data-label': 'Sent' }, fmtDateTime(n.createdAt)),
    h('td', { 'data-label': 'Status' }, badge),
    h('td', { className: 'cell-action cell-two' }, button),
  ]);
  function setRead(read) {
    tr.dataset.read = String(read);
    tr.classList.toggle('row--stale', read); // the faded look of a stale worker's row
    badge.className = read ? 'badge' : 'badge badge--processing';
    setText(badge, read ? 'Read' : 'Unread');
    button.hidden = read;
  }
  setRead(Boolean(n.readAt));
  return { tr, setRead };
}
