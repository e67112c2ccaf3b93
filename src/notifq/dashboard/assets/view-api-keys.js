// #/api-keys: the keys services call the API with (GET /api-keys): their scopes, prefix, expiry and last use; a form
// that creates one (POST /api-keys), whose answer is the only one that holds the key's secret: it is shown once, in a
// panel with a Copy button, until the reader says it is saved (or leaves the page); and Revoke (DELETE
// /api-keys/{id}) after a confirmation. Revoked keys stay listed, for the record.

import { ApiError, api } from './api.js';
import { MessageArea, cardRow, confirmInline, field, pageHeading, select, setFieldError, showSecretOnce, table } from './components.js';
import { fmtAgo, fmtDateTime, fmtInt, h, isAbort, setText } from './dom.js';

/** The scopes a key can hold (POST /api-keys `scopes`; a test keeps this list in step with the API's). */
export const API_KEY_SCOPES = [
  ['notifications:send', 'Send notifications', 'POST /notifications only; reads nothing.'],
  ['campaigns:write', 'Run campaigns', 'Create, retry, pause, resume and cancel campaigns; cancel notifications; redrive dead letters.'],
  ['read', 'Read', 'Campaigns, notifications, dead letters, stats, workers; inbox tokens for subscribers.'],
  ['admin', 'Admin', 'Everything, including subscriber profiles, suppressions, webhooks and API keys.'],
];

const EXPIRIES = [
  ['', 'Never'],
  ['30', 'In 30 days'],
  ['90', 'In 90 days'],
  ['365', 'In a year'],
];

const STATUS_LABELS = { active: 'Active', expired: 'Expired', revoked: 'Revoked' };

/** A key's state now: revoked, expired or active. */
export function keyStatus(k, now = Date.now()) {
  if (k.revokedAt) return 'revoked';
  if (k.expiresAt && Date.parse(k.expiresAt) <= now) return 'expired';
  return 'active';
}

function keyBadge(status) {
  return h('span', { className: `badge badge--key-${status}`, dataset: { role: 'status-badge', status } }, STATUS_LABELS[status] || status);
}

export function renderApiKeys(container, { signal }) {
  const name = field({
    id: 'key-name',
    label: 'Name',
    hint: 'What will use it (a service, a job), for other operators.',
    control: h('input', { type: 'text', name: 'name', autocomplete: 'off', required: true, maxlength: '200', placeholder: 'Order service' }),
  });
  const expiry = field({ id: 'key-expiry', label: 'Expires', control: select('expiry', EXPIRIES, '') });
  const boxes = [];
  const scopesError = h('p', { className: 'field__error', id: 'key-scopes-error', hidden: true });
  const scopesSet = h(
    'fieldset',
    { className: 'fieldset wh-events', id: 'key-scopes', 'aria-describedby': 'key-scopes-error' },
    h('legend', {}, 'Scopes'),
    h(
      'div',
      { className: 'choices key-scopes' },
      API_KEY_SCOPES.map(([value, label, hint]) => {
        const box = h('input', { type: 'checkbox', name: 'scopes', value, id: `key-scope-${value.replace(':', '-')}` });
        boxes.push(box);
        return h('label', { className: 'choice key-scope', title: hint }, box, h('span', {}, label), h('code', { className: 'wh-events__type' }, value), h('span', { className: 'key-scope__hint muted' }, hint));
      }),
    ),
    scopesError,
  );
  const submit = h('button', { type: 'submit', className: 'btn btn--primary', id: 'key-submit' }, 'Create key');
  const form = h(
    'form',
    { className: 'card', id: 'api-key-create', 'aria-labelledby': 'key-create-title', novalidate: true },
    h('h2', { id: 'key-create-title' }, 'Create a key'),
    h('div', { className: 'filters__row filters__row--even' }, name.wrapper, expiry.wrapper),
    scopesSet,
    h('div', { className: 'btn-row' }, submit),
  );

  const secretSlot = h('div', { id: 'api-key-secret-slot' });
  const messages = new MessageArea('api-keys-message');
  const confirmSlot = h('div', { className: 'confirm-slot', id: 'api-keys-confirm' });
  const list = table('API keys', ['Key', 'Scopes', 'Status', 'Created', 'Expires', 'Last used', 'Action'], { id: 'api-keys-table', cards: true });
  const empty = h('div', { className: 'empty', id: 'api-keys-empty', hidden: true }, h('p', {}, 'No API keys yet. Create one above.'));
  const summary = h('p', { className: 'muted', id: 'api-keys-summary', 'aria-live': 'polite' });
  container.replaceChildren(
    h('div', { className: 'page-header' }, pageHeading('API keys')),
    h(
      'p',
      { className: 'muted page-intro' },
      'Services call the API with a key instead of a login: Authorization: Bearer nq_…. A key acts for the admin who made it, ' +
        'limited to its scopes; notifq keeps only a hash of it, so its secret is shown once. Revoking a key stops it within 2 seconds everywhere.',
    ),
    secretSlot,
    messages.el,
    form,
    h('div', { className: 'toolbar toolbar--row' }, summary),
    confirmSlot,
    h('section', { className: 'card card--flush', 'aria-label': 'API keys' }, list.wrap, empty),
  );

  async function load() {
    try {
      const page = await api('/api-keys', { signal });
      list.body.replaceChildren(...page.items.map((k) => keyRow(k, revoke)));
      empty.hidden = page.items.length > 0;
      list.wrap.hidden = page.items.length === 0;
      const active = page.items.filter((k) => keyStatus(k) === 'active').length;
      setText(summary, page.items.length ? `${fmtInt(active)} active key${active === 1 ? '' : 's'}, ${fmtInt(page.items.length)} in all.` : '');
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      messages.show('error', `Could not load the API keys: ${error.message}`);
    }
  }

  async function revoke(k, button) {
    const yes = await confirmInline(confirmSlot, {
      text: `Revoke “${k.name}” (${k.prefix}…)? Whatever uses it is refused from now on, as are the keys it created.`,
      yes: 'Yes, revoke it',
      no: 'Keep it',
      returnTo: button,
      id: 'confirm-revoke-key',
    });
    if (!yes) return;
    button.disabled = true;
    try {
      await api(`/api-keys/${encodeURIComponent(k.id)}`, { method: 'DELETE', signal });
      messages.show('success', `“${k.name}” was revoked.`);
      await load();
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      button.disabled = false;
      messages.show('error', `Could not revoke it: ${error.message}`);
    }
  }

  function setScopesError(text) {
    scopesError.hidden = !text;
    setText(scopesError, text || '');
    scopesSet.classList.toggle('fieldset--invalid', Boolean(text));
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    setFieldError(name);
    setFieldError(expiry);
    setScopesError('');
    messages.clear();
    const label = name.control.value.trim();
    const scopes = boxes.filter((b) => b.checked).map((b) => b.value);
    if (!label) {
      setFieldError(name, 'Enter a name for the key.');
      name.control.focus();
      return;
    }
    if (!scopes.length) {
      setScopesError('Choose at least one scope.');
      boxes[0].focus();
      return;
    }
    const body = { name: label, scopes };
    if (expiry.control.value) body.expiresAt = new Date(Date.now() + Number(expiry.control.value) * 86400000).toISOString();
    submit.disabled = true;
    try {
      const created = await api('/api-keys', { method: 'POST', body, signal });
      showSecret(created);
      form.reset();
      await load();
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      if (error instanceof ApiError && error.status === 422) {
        const where = String(error.details?.field || '');
        if (where.startsWith('scopes')) setScopesError(error.message);
        else {
          const target = where.startsWith('expiresAt') ? expiry : name;
          setFieldError(target, error.message);
          target.control.focus();
        }
      } else messages.show('error', `Could not create the key: ${error.message}`);
    } finally {
      submit.disabled = false;
    }
  });

  /** The new key's secret, once (components.showSecretOnce). */
  function showSecret(created) {
    showSecretOnce(secretSlot, {
      id: 'api-key-secret',
      title: `Secret of “${created.name}”`,
      hint: 'Give it to the service as Authorization: Bearer <key> (the CLI reads NOTIFQ_API_KEY). Lost it? Revoke the key and create another.',
      label: 'API key',
      secret: created.secret,
      onDone: () => name.control.focus(),
    });
  }

  load();
}

function keyRow(k, onRevoke) {
  const status = keyStatus(k);
  const button = status === 'revoked' ? null : h('button', { type: 'button', className: 'btn btn--small btn--danger', dataset: { revoke: k.id } }, 'Revoke');
  const row = cardRow({ dataset: { keyId: k.id, status } }, [
    h('td', { className: 'cell-full cell-wrap' }, h('span', { className: 'key-name' }, k.name), h('div', {}, h('code', { className: 'key-prefix' }, `${k.prefix}…`))),
    h('td', { className: 'cell-full cell-wrap', 'data-label': 'Scopes' }, k.scopes.map((s) => h('code', { className: 'key-scope-tag' }, s))),
    h('td', { 'data-label': 'Status' }, keyBadge(status)),
    h('td', { className: 'nowrap cell-two', 'data-label': 'Created' }, fmtDateTime(k.createdAt)),
    h('td', { className: 'nowrap cell-two', 'data-label': 'Expires' }, k.expiresAt ? fmtDateTime(k.expiresAt) : 'never'),
    h('td', { className: 'nowrap cell-two', 'data-label': 'Last used' }, k.lastUsedAt ? fmtAgo(k.lastUsedAt) : 'never'),
    h('td', { className: 'cell-action' }, button || (k.revokedAt ? h('span', { className: 'muted' }, `revoked ${fmtAgo(k.revokedAt)}`) : null)),
  ]);
  button?.addEventListener('click', () => onRevoke(k, button));
  return row;
}
