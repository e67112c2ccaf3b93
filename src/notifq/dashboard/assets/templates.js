// `{{ name }}` placeholders, filled the way the server fills them (src/notifq/templates.py): a name is a letter
// or "_" then letters, digits or "_", spaces inside the braces allowed; `{{ to }}` is the recipient's address
// unless a variable of that name is given; a placeholder without a value stays as written (and the API refuses
// the campaign: every placeholder needs a value for every recipient). No logic, no filters.

export const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;
const BUILTINS = new Set(['to']);

/**
 * A template split into parts: {text} as written, {name, value} filled, {name, raw, missing: true} without a
 * value. Joining the texts, values and raws of the parts gives what the server would send.
 */
export function renderParts(template, variables, to) {
  if (!template) return [];
  const values = { to, ...(variables || {}) };
  const parts = [];
  let last = 0;
  for (const m of template.matchAll(PLACEHOLDER)) {
    if (m.index > last) parts.push({ text: template.slice(last, m.index) });
    const name = m[1];
    if (Object.hasOwn(values, name)) parts.push({ name, value: String(values[name]) });
    else parts.push({ name, raw: m[0], missing: true });
    last = m.index + m[0].length;
  }
  if (last < template.length) parts.push({ text: template.slice(last) });
  return parts;
}

/** The placeholders of the texts that `variables` lacks (sorted, `to` never missing), as the API checks them. */
export function missingVariables(texts, variables) {
  const names = new Set();
  for (const t of texts) if (t) for (const m of t.matchAll(PLACEHOLDER)) names.add(m[1]);
  return [...names].filter((n) => !BUILTINS.has(n) && !Object.hasOwn(variables || {}, n)).sort();
}
