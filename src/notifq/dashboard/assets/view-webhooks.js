// #/webhooks: the endpoints notifq POSTs its events to (GET /webhooks), with how each is doing, and a form that
// adds one (POST /webhooks). The answer to that POST is the only one that holds the endpoint's signing secret:
// it is shown once, in a panel with a Copy button, until the reader says it is saved (or leaves the page).
// Each endpoint's page (#/webhooks/<id>, view-webhook.js) has its deliveries, a test, enable/disable and delete.

import { ApiError, api } from './api.js';
import { MessageArea, cardRow, field, pageHeading, setFieldError, showSecretOnce, table } from './components.js';
import { fmtAgo, fmtDuration, fmtInt, h, isAbort, replace, setText } from './dom.js';

/** The event types an endpoint can subscribe to (POST /webhooks `events`; a test keeps this list in step). */
export const WEBHOOK_EVENTS = {
  Messages: [
    ['message.sent', 'sent'],
    ['message.failed', 'failed'],
    ['message.skipped', 'skipped'],
    ['message.retry', 'retry'],
    ['message.cancelled', 'cancelled'],
    ['message.delivered', 'delivered'],
    ['message.read', 'read'],
    ['message.bounced', 'bounced'],
    ['message.soft_bounced', 'soft bounce'],
    ['message.complained', 'complaint'],
    ['message.unsubscribed', 'unsubscribed'],
  ],
  Campaigns: [
    ['campaign.started', 'started'],
    ['campaign.paused', 'paused'],
    ['campaign.resumed', 'resumed'],
    ['campaign.cancelled', 'cancelled'],
    ['campaign.completed', 'completed'],
  ],
};

export const WEBHOOK_STATUS_LABELS = { active: 'Active', failing: 'Failing', disabled: 'Disabled' };

/** An endpoint's status pill; the text carries the meaning. */
export function webhookBadge(status) {
  return h(
    'span',
    { className: `badge badge--webhook-${String(status).replace(/[^a-z]/g, '')}`, dataset: { role: 'status-badge', status } },
    WEBHOOK_STATUS_LABELS[status] || status,
  );
}

/** Why an endpoint is not simply active (its disabled reason, or since when it fails and why), or null. */
export function webhookTrouble(w) {
  if (w.status === 'disabled') return w.disabledReason || 'Disabled.';
  if (w.status === 'failing') {
    const since = Math.max(0, (Date.now() - Date.parse(w.failingSince)) / 1000);
    return `Failing for ${fmtDuration(since)}${w.lastError ? `. Last error: ${w.lastError}` : '.'}`;
  }
  return null;
}

/** The event types an endpoint receives, in words short enough for a table cell. */
export function webhookEvents(w) {
  const all = Object.values(WEBHOOK_EVENTS).flat().length;
  return w.events.length === all ? `all ${all} event types` : w.events.join(', ');
}

/** What an endpoint is called in headings: its description, or its URL's host. */
export function webhookName(w) {
  if (w.description) return w.description;
  try {
    return new URL(w.url).host;
  } catch {
    return w.url;
  }
}

export function renderWebhooks(container, { signal }) {
  const f = {
    url: field({
      id: 'wh-url',
      label: 'URL',
      hint: 'Where notifq POSTs the events: https://… on a public address (private networks need NOTIFQ_WEBHOOKS_ALLOW_PRIVATE=1).',
      control: h('input', { type: 'url', name: 'url', autocomplete: 'off', spellcheck: 'false', required: true, maxlength: '2048', placeholder: 'https://hooks.example.com/notifq' }),
    }),
    description: field({
      id: 'wh-description',
      label: 'Description',
      hint: 'Optional: what receives them, for other operators.',
      control: h('input', { type: 'text', name: 'description', autocomplete: 'off', maxlength: '500' }),
    }),
  };
  const boxes = [];
  const groups = Object.entries(WEBHOOK_EVENTS).map(([group, events]) =>
    h(
      'div',
      { className: 'wh-events__group' },
      h('h3', { className: 'label' }, group),
      h(
        'div',
        { className: 'choices' },
        events.map(([value, label]) => {
          const box = h('input', { type: 'checkbox', name: 'events', value, id: `wh-event-${value.replace('.', '-')}` });
          boxes.push(box);
          return h('label', { className: 'choice', title: value }, box, h('span', {}, label), h('code', { className: 'wh-events__type' }, value));
        }),
      ),
    ),
  );
  const eventsError = h('p', { className: 'field__error', id: 'wh-events-error', hidden: true });
  const allButton = h('button', { type: 'button', className: 'btn btn--small btn--ghost', id: 'wh-events-all' }, 'Select all');
  const noneButton = h('button', { type: 'button', className: 'btn btn--small btn--ghost', id: 'wh-events-none' }, 'Clear');
  const eventsSet = h(
    'fieldset',
    { className: 'fieldset wh-events', id: 'wh-events', 'aria-describedby': 'wh-events-error' },
    h('legend', {}, 'Events'),
    h('div', { className: 'btn-row wh-events__quick' }, allButton, noneButton),
    groups,
    eventsError,
  );
  const batch = h('input', { type: 'checkbox', name: 'batch', id: 'wh-batch' });
  const batchChoice = h(
    'div',
    { className: 'wh-batch' },
    h('label', { className: 'choice' }, batch, h('span', {}, 'Batch: up to 100 events per POST, as {"events": […]}')),
    h('p', { className: 'field__hint wh-batch__hint' }, 'For receivers that take many events a second; otherwise one event per POST.'),
  );
  const submit = h('button', { type: 'submit', className: 'btn btn--primary', id: 'wh-submit' }, 'Add endpoint');
  const form = h(
    'form',
    { className: 'card', id: 'webhook-create', 'aria-labelledby': 'wh-create-title', novalidate: true },
    h('h2', { id: 'wh-create-title' }, 'Add an endpoint'),
    h('div', { className: 'filters__row filters__row--even' }, f.url.wrapper, f.description.wrapper),
    eventsSet,
    batchChoice,
    h('div', { className: 'btn-row' }, submit),
  );

  const secretSlot = h('div', { id: 'webhook-secret-slot' });
  const messages = new MessageArea('webhooks-message');
  const list = table('Webhook endpoints', ['Endpoint', 'Status', 'Events', 'Pending', 'Last success'], { id: 'webhooks-table', numeric: [3], cards: true });
  const empty = h('div', { className: 'empty', id: 'webhooks-empty', hidden: true }, h('p', {}, 'No webhook endpoints yet. Add one above.'));
  const summary = h('p', { className: 'muted', id: 'webhooks-summary', 'aria-live': 'polite' });
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('Webhooks')),
    h(
      'p',
      { className: 'muted page-intro' },
      'notifq POSTs the events you choose to your endpoints, signed with each endpoint’s secret (Notifq-Signature), at least once: ' +
        'receivers check the signature, answer 2xx and drop repeated event ids. A failing endpoint is retried with backoff, and disabled after 3 days.',
    ),
    secretSlot,
    messages.el,
    form,
    h('div', { className: 'toolbar toolbar--row' }, summary),
    h('section', { className: 'card card--flush', 'aria-label': 'Webhook endpoints' }, list.wrap, empty),
  );

  async function load() {
    try {
      const page = await api('/webhooks', { signal });
      replace(list.body, page.items.map(webhookRow));
      empty.hidden = page.items.length > 0;
      list.wrap.hidden = page.items.length === 0;
      setText(summary, page.items.length ? `${fmtInt(page.items.length)} endpoint${page.items.length === 1 ? '' : 's'}.` : '');
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      messages.show('error', `Could not load the webhook endpoints: ${error.message}`);
    }
  }

  function setEventsError(text) {
    eventsError.hidden = !text;
    setText(eventsError, text || '');
    eventsSet.classList.toggle('fieldset--invalid', Boolean(text));
  }

  allButton.addEventListener('click', () => boxes.forEach((b) => (b.checked = true)));
  noneButton.addEventListener('click', () => boxes.forEach((b) => (b.checked = false)));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    setFieldError(f.url);
    setFieldError(f.description);
    setEventsError('');
    messages.clear();
    const url = f.url.control.value.trim();
    const events = boxes.filter((b) => b.checked).map((b) => b.value);
    if (!url) {
      setFieldError(f.url, 'Enter the URL to POST the events to.');
      f.url.control.focus();
      return;
    }
    if (!events.length) {
      setEventsError('Choose at least one event.');
      boxes[0].focus();
      return;
    }
    const body = { url, events, batch: batch.checked };
    const description = f.description.control.value.trim();
    if (description) body.description = description;
    submit.disabled = true;
    try {
      const created = await api('/webhooks', { method: 'POST', body, signal });
      showSecret(created);
      form.reset();
      await load();
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      if (error instanceof ApiError && error.status === 422) {
        const name = String(error.details?.field || '');
        if (name.startsWith('events')) setEventsError(error.message);
        else {
          const target = name.startsWith('description') ? f.description : f.url;
          setFieldError(target, error.message);
          target.control.focus();
        }
      } else messages.show('error', `Could not add the endpoint: ${error.message}`);
    } finally {
      submit.disabled = false;
    }
  });

  /** The new endpoint's secret, once (components.showSecretOnce). */
  function showSecret(created) {
    showSecretOnce(secretSlot, {
      id: 'webhook-secret',
      title: ['Signing secret for ', h('a', { href: `#/webhooks/${encodeURIComponent(created.id)}` }, webhookName(created))],
      hint: 'Your receiver checks each POST’s Notifq-Signature header with it (docs/webhooks.md). Lost it? Delete the endpoint and add it again.',
      label: 'Signing secret',
      secret: created.secret,
      onDone: () => f.url.control.focus(),
    });
  }

  load();
}

function webhookRow(w) {
  const trouble = webhookTrouble(w);
  return cardRow({ dataset: { webhookId: w.id, status: w.status } }, [
    h(
      'td',
      { className: 'cell-full cell-wrap' },
      h('a', { href: `#/webhooks/${encodeURIComponent(w.id)}`, className: 'webhook-link' }, webhookName(w)),
      w.description ? h('div', { className: 'muted wh-url' }, w.url) : null,
    ),
    h('td', { className: 'cell-full cell-wrap', 'data-label': 'Status' }, webhookBadge(w.status), trouble ? h('div', { className: 'wh-trouble' }, trouble) : null),
    h('td', { className: 'cell-two cell-wrap', 'data-label': 'Events' }, webhookEvents(w)),
    h('td', { className: 'num', 'data-label': 'Pending' }, fmtInt(w.pending)),
    h('td', { className: 'nowrap', 'data-label': 'Last success' }, w.lastSuccessAt ? fmtAgo(w.lastSuccessAt) : 'never'),
  ]);
}
