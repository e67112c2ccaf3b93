// The template preview of the new-campaign form: the subject and body as the first recipient will get them.

import { recipientsFromText } from './csv.js';
import { address, h, replace } from './dom.js';
import { missingVariables, renderParts } from './templates.js';

/** The first synthetic recipient of "Generate test recipients", per channel (as the API makes them). */
const FIRST_SYNTHETIC = { email: 'user1@example.com', sms: '+15550000001', push: 'mock-device-1' };

/**
 * The first recipient of the chosen source, as {to, vars, where}: the first pasted line, the first CSV row
 * (with its variables), or the first generated address; null when there is none yet.
 */
export function firstRecipient(f, mode, csv) {
  if (mode === 'paste') {
    const { recipients, lines } = recipientsFromText(f.recipients.control.value);
    return recipients.length ? { to: recipients[0], vars: {}, where: `line ${lines[0]}`, source: 'paste' } : null;
  }
  if (mode === 'csv') {
    const first = csv?.recipients[0];
    if (first === undefined) return null;
    const to = typeof first === 'string' ? first : first.to;
    return { to, vars: typeof first === 'string' ? {} : first.vars, where: `line ${csv.lines[0]} of ${csv.name}`, source: 'csv' };
  }
  const to = FIRST_SYNTHETIC[f.channel.control.value] || FIRST_SYNTHETIC.email;
  return { to, vars: {}, where: 'the first generated recipient', source: 'count' };
}

/**
 * Subject and body as the first recipient will get them, with the server's rules (templates.js): values
 * filled in are tinted, placeholders without a value are marked and listed, since the API would refuse them.
 */
export function templatePreview() {
  const heading = h('h3', { className: 'preview__title', id: 'preview-title' }, 'Preview');
  const who = h('p', { className: 'preview__for', id: 'preview-for' });
  const subject = h('dd', { id: 'preview-subject' });
  const body = h('dd', { id: 'preview-body' });
  const problems = h('p', { className: 'preview__problems', id: 'preview-missing', hidden: true });
  const el = h(
    'section',
    { className: 'preview', id: 'template-preview', 'aria-labelledby': 'preview-title' },
    heading,
    who,
    h('dl', {}, h('dt', {}, 'Subject'), subject, h('dt', {}, 'Body'), body),
    problems,
  );

  const nodes = (parts) =>
    parts.map((p) => {
      if (p.text !== undefined) return p.text;
      if (p.missing) return h('mark', { className: 'preview__missing', title: `No value for “${p.name}”` }, p.raw);
      return h('span', { className: 'preview__value', title: `{{ ${p.name} }}` }, p.value);
    });

  function update(recipient, subjectText, bodyText) {
    const to = recipient?.to || '';
    const vars = recipient?.vars || {};
    if (recipient) replace(who, 'For ', address(to), ` (${recipient.where})`);
    else replace(who, 'For the first recipient, once there is one.');
    const shown = (text, el) => {
      const parts = renderParts(text, vars, recipient ? to : '{{ to }}');
      replace(el, parts.length ? nodes(parts) : h('span', { className: 'muted' }, text ? '' : '(empty)'));
    };
    shown(subjectText, subject);
    shown(bodyText, body);
    const missing = missingVariables([subjectText, bodyText], vars);
    problems.hidden = missing.length === 0 || !recipient;
    if (missing.length && recipient) {
      const list = missing.map((n) => `“${n}”`).join(', ');
      const fix =
        recipient.source === 'csv'
          ? `Add ${missing.length === 1 ? 'a column' : 'columns'} named ${missing.join(', ')} to the file.`
          : 'Pasted and generated recipients have only {{ to }}: upload a CSV file with a column for each variable.';
      problems.textContent = `No value for ${list} in this recipient; the campaign would be refused. ${fix}`;
    }
  }

  return { el, update };
}
