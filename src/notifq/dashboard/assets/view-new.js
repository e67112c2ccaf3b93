// #/new: the new campaign form.
//
// The API is the one validator (addresses, templates, sizes): its 422 answers name the field
// (`details.field`, or `details.fields`), and the message is shown under that field; errors
// without a field go to the general error area at the top of the form.

import { ApiError, api } from './api.js';
import { MessageArea, field, pageHeading, setFieldError } from './components.js';
import { recipientsFromCsv, recipientsFromText } from './csv.js';
import { fmtInt, h, isAbort, randomKey, replace } from './dom.js';
import { firstRecipient, templatePreview } from './preview.js';

const PLACEHOLDERS = {
  email: 'ana@bank.example\nli@bank.example',
  sms: '+15550001234\n+15550001235',
  push: 'mock-device-1\nmock-device-2',
};

export function renderNew(container, { signal }) {
  const f = buildFields();
  const general = new MessageArea('new-campaign-error');
  const submit = h('button', { type: 'submit', className: 'btn btn--primary', id: 'new-submit' }, 'Create campaign');
  const sources = sourceFieldset(f);
  const preview = templatePreview();
  const form = h(
    'form',
    { className: 'card form', id: 'new-campaign-form', novalidate: true, 'aria-labelledby': 'new-title' },
    general.el,
    f.name.wrapper,
    h('div', { className: 'form__row' }, f.channel.wrapper, f.sendAt.wrapper),
    f.subject.wrapper,
    f.body.wrapper,
    sources.el,
    preview.el,
    h('div', { className: 'btn-row' }, submit, h('a', { className: 'btn btn--ghost', href: '#/campaigns' }, 'Cancel')),
  );
  const title = pageHeading('New campaign');
  title.id = 'new-title';
  container.replaceChildren(h('div', { className: 'page-header' }, title), form);

  // One key per form: a double submit or a retried request cannot create the campaign twice.
  // (The API frees the key when a request fails, so fixing an error and resubmitting works.)
  const idempotencyKey = randomKey();
  let csv = null; // the parsed CSV file, kept between submits

  f.channel.control.addEventListener('change', () => {
    f.recipients.control.placeholder = PLACEHOLDERS[f.channel.control.value] || '';
  });
  // The preview follows every keystroke in the texts and the recipients, and every change of source or file.
  const updatePreview = () => preview.update(firstRecipient(f, sources.mode(), csv), f.subject.control.value, f.body.control.value);
  for (const control of [f.subject.control, f.body.control, f.recipients.control]) control.addEventListener('input', updatePreview);
  form.addEventListener('change', updatePreview);
  f.csv.control.addEventListener('change', async () => {
    csv = null;
    setFieldError(f.csv);
    const file = f.csv.control.files[0];
    if (!file) return replace(sources.csvSummary);
    try {
      csv = { name: file.name, ...recipientsFromCsv(await file.text()) };
      replace(sources.csvSummary, csvSummaryText(csv));
      updatePreview();
    } catch {
      setFieldError(f.csv, 'This file could not be read as text.');
    }
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(f, general);
    const built = buildPayload(f, sources.mode(), csv);
    if (built.error) {
      setFieldError(built.error.field, built.error.message);
      built.error.field.control.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Creating…';
    try {
      const campaign = await api('/campaigns', {
        method: 'POST',
        body: built.payload,
        signal,
        headers: { 'Idempotency-Key': idempotencyKey },
      });
      location.hash = `#/campaigns/${encodeURIComponent(campaign.id)}`;
    } catch (error) {
      if (isAbort(error) || error.status === 401) return;
      showApiError(error, f, general, sources.mode(), built.lines);
    } finally {
      submit.disabled = false;
      submit.textContent = 'Create campaign';
    }
  });
  updatePreview();
  f.name.control.focus();
}

function buildFields() {
  const channel = h(
    'select',
    { name: 'channel' },
    h('option', { value: 'email', selected: true }, 'Email'),
    h('option', { value: 'sms' }, 'SMS'),
    h('option', { value: 'push' }, 'Push'),
  );
  return {
    name: field({ id: 'new-name', label: 'Campaign name', control: h('input', { type: 'text', name: 'name', maxlength: '200', autocomplete: 'off', required: true }) }),
    channel: field({ id: 'new-channel', label: 'Channel', control: channel }),
    sendAt: field({
      id: 'new-send-at',
      label: 'Send at (optional)',
      hint: 'Your local time. Leave empty to send now.',
      control: h('input', { type: 'datetime-local', name: 'sendAt' }),
    }),
    subject: field({
      id: 'new-subject',
      label: 'Subject',
      hint: 'One line. {{ name }} is replaced by the recipient’s variable of that name, {{ to }} by the address.',
      control: h('input', { type: 'text', name: 'subject', maxlength: '998', autocomplete: 'off' }),
    }),
    body: field({ id: 'new-body', label: 'Message body', control: h('textarea', { name: 'body', rows: '6' }) }),
    recipients: field({
      id: 'new-recipients',
      label: 'Recipients',
      hint: 'One address per line.',
      control: h('textarea', { name: 'recipients', rows: '8', spellcheck: 'false', placeholder: PLACEHOLDERS.email }),
    }),
    csv: field({
      id: 'new-csv',
      label: 'CSV file',
      hint: 'A header row with a “to” column; every other column becomes a template variable. Without a header, the first column is the address.',
      control: h('input', { type: 'file', name: 'csv', accept: '.csv,text/csv,text/plain' }),
    }),
    count: field({
      id: 'new-count',
      label: 'Number of test recipients',
      hint: 'Load-test mode: user1@example.com … userN@example.com, all delivered by the mock provider.',
      control: h('input', { type: 'number', name: 'recipientCount', min: '1', step: '1', inputmode: 'numeric' }),
    }),
  };
}

/** The "Recipients" fieldset: three sources, one visible at a time. */
function sourceFieldset(f) {
  const choices = [
    ['paste', 'Paste a list', f.recipients.wrapper],
    ['csv', 'Upload a CSV file', f.csv.wrapper],
    ['count', 'Generate test recipients', f.count.wrapper],
  ];
  const csvSummary = h('p', { className: 'field__hint', id: 'new-csv-summary', 'aria-live': 'polite' });
  f.csv.wrapper.append(csvSummary);
  const radios = choices.map(([value, label]) =>
    h('label', { className: 'choice' }, h('input', { type: 'radio', name: 'source', value, id: `source-${value}`, checked: value === 'paste' }), label),
  );
  const panels = h('div', { className: 'source-panels' }, choices.map(([, , panel]) => panel));
  const el = h('fieldset', { className: 'fieldset' }, h('legend', {}, 'Recipients'), h('div', { className: 'choices' }, radios), panels);
  const mode = () => el.querySelector('input[name="source"]:checked').value;
  const show = () => choices.forEach(([value, , panel]) => (panel.hidden = value !== mode()));
  el.addEventListener('change', (event) => event.target.name === 'source' && show());
  show();
  return { el, mode, csvSummary };
}

function csvSummaryText(csv) {
  const n = `${fmtInt(csv.recipients.length)} recipient${csv.recipients.length === 1 ? '' : 's'} in ${csv.name}`;
  if (!csv.hasHeader) return `${n} (no “to” header: the first column is used as the address).`;
  return csv.columns.length ? `${n}, with variables: ${csv.columns.join(', ')}.` : `${n}.`;
}

/**
 * The JSON body for POST /campaigns, plus the source line of each recipient (to point at
 * lines in errors). Only what the API cannot check is checked here: a missing file or count.
 */
function buildPayload(f, mode, csv) {
  const payload = { name: f.name.control.value, channel: f.channel.control.value };
  const subject = f.subject.control.value;
  const body = f.body.control.value;
  if (subject.trim()) payload.subject = subject;
  if (body.trim()) payload.body = body;
  if (f.sendAt.control.value) {
    const at = new Date(f.sendAt.control.value); // datetime-local is local time; send it with its zone
    if (Number.isNaN(at.getTime())) return { error: { field: f.sendAt, message: 'Enter a valid date and time.' } };
    payload.sendAt = at.toISOString();
  }
  let lines = null;
  if (mode === 'paste') {
    const parsed = recipientsFromText(f.recipients.control.value);
    payload.recipients = parsed.recipients;
    lines = parsed.lines;
  } else if (mode === 'csv') {
    if (!csv) return { error: { field: f.csv, message: 'Choose a CSV file.' } };
    payload.recipients = csv.recipients;
    lines = csv.lines;
  } else {
    const count = Number(f.count.control.value);
    if (!Number.isInteger(count) || count < 1) return { error: { field: f.count, message: 'Enter a whole number of recipients, 1 or more.' } };
    payload.recipientCount = count;
  }
  return { payload, lines };
}

function clearErrors(f, general) {
  for (const item of Object.values(f)) setFieldError(item);
  general.clear();
}

/** Put an API error under the field it names, or in the general area. */
function showApiError(error, f, general, mode, lines) {
  if (!(error instanceof ApiError) || error.status !== 422) {
    general.show('error', error instanceof ApiError ? error.message : 'Something went wrong. Please try again.');
    return;
  }
  const details = error.details || {};
  const names = details.fields || (details.field ? [details.field] : []);
  const targets = [...new Set(names.map((name) => fieldFor(name, f, mode)).filter(Boolean))];
  if (!targets.length) {
    general.show('error', error.message);
    return;
  }
  targets.forEach((target, i) => setFieldError(target, h('span', {}, error.message), i === 0 ? offenders(details, lines) : null));
  targets[0].control.focus();
}

/** Map an API field name ("recipients[3].vars.name", "sendAt") to a form field. */
function fieldFor(name, f, mode) {
  const root = String(name).split(/[.[]/)[0];
  const recipientField = mode === 'csv' ? f.csv : mode === 'count' ? f.count : f.recipients;
  const map = {
    name: f.name,
    channel: f.channel,
    subject: f.subject,
    body: f.body,
    sendAt: f.sendAt,
    recipients: recipientField,
    recipientCount: recipientField,
  };
  return map[root] || null;
}

/** The first offending recipients, by source line: invalid addresses, missing variables. */
function offenders(details, lines) {
  const where = (index) => {
    const line = lines?.[index];
    return line ? `Line ${line}` : `Recipient ${index + 1}`;
  };
  const items = [];
  for (const bad of details.invalid || []) items.push(`${where(bad.index)}: ${bad.value}`);
  for (const gap of details.missingVariables || []) items.push(`${where(gap.index)} (${gap.to}): no value for ${gap.variables.join(', ')}`);
  if (!items.length) return null;
  return h('ul', { className: 'field__list' }, items.map((text) => h('li', {}, text)));
}
