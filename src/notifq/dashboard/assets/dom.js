// DOM building and formatting helpers.
//
// Safety rule for the whole dashboard: data from the API or the user only ever reaches the
// page as Text nodes (string children of `h`, or `textContent`). Nothing uses innerHTML,
// so a campaign named `<img src=x onerror=alert(1)>` is shown as those characters.

/**
 * Create an element: h('a', {href: '#/new', className: 'btn'}, 'New campaign').
 * Props: `className`, `text` (textContent), `dataset`, `on<Event>` listeners; anything else is
 * set with setAttribute (true = present, false/null/undefined = absent). String and number
 * children become Text nodes; arrays are flattened; null/false children are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'className') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'style' || key.startsWith('on')) {
      // Inline styles and inline handlers are refused by the CSP; fail loudly in development.
      throw new Error(`h(): "${key}" is not allowed (CSP); use a class or a listener`);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Append children (nodes, strings, numbers, nested arrays) as nodes; strings become Text nodes. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace all of an element's children. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/**
 * An address (email, phone number, push token) that wraps at sensible points: after "@" and "+", before
 * ".", after "-" and "_" (<wbr> elements between Text nodes), never inside a word unless one part alone is
 * wider than its box. The full value is in the title (for when a layout ellipsizes it).
 */
export function address(value) {
  const text = String(value ?? '');
  const el = h('span', { className: 'addr', title: text });
  for (const part of text.split(/(?<=[@+\-_/])|(?=\.)/)) {
    if (el.childNodes.length) el.append(document.createElement('wbr'));
    el.append(document.createTextNode(part));
  }
  return el;
}

/** Set text only when it changed: avoids needless layout and keeps screen readers quiet. */
export function setText(el, value) {
  const text = String(value);
  if (el.textContent !== text) el.textContent = text;
}

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/** 12,345 (in the browser's locale). */
export function fmtInt(n) {
  return integer.format(Number(n) || 0);
}

/** A rate such as 123.4; whole numbers above 100 (the decimal is noise there). */
export function fmtRate(n) {
  const value = Number(n) || 0;
  return value >= 100 ? integer.format(value) : decimal.format(value);
}

const share = new Intl.NumberFormat(undefined, { style: 'percent', minimumFractionDigits: 2, maximumFractionDigits: 2 });

/** A fraction (0..1) as a percentage with two decimals: 0.08 -> "8.00%" (as the campaign guard words its rates). */
export function fmtShare(fraction) {
  return share.format(Number(fraction) || 0);
}

/** 42% of a whole (0 when the whole is 0). */
export function percent(part, whole) {
  return whole > 0 ? Math.min(100, Math.max(0, (part / whole) * 100)) : 0;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** An ISO timestamp in the browser's locale and zone; an em dash when absent. */
export function fmtDateTime(iso) {
  if (!iso) return '—';
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? '—' : dateTime.format(at);
}

/** A duration: "12 s", "3 min 05 s", "2 h 04 min"; `precise` gives tenths below 10 s ("0.4 s"). */
export function fmtDuration(seconds, { precise = false } = {}) {
  if (precise && seconds < 9.95) return `${decimal.format(Math.max(0, seconds))} s`;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** "4 s ago" / "3 min ago" relative to now (never negative: clocks drift a little). */
export function fmtAgo(iso, now = Date.now()) {
  if (!iso) return '—';
  const seconds = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  return `${fmtDuration(seconds)} ago`;
}

/** A random key for Idempotency-Key headers (randomUUID needs a secure context; fall back). */
export function randomKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Resolve after `ms`, or reject at once with an AbortError when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? abortError());
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(signal.reason ?? abortError());
    }
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

export function abortError() {
  return new DOMException('aborted', 'AbortError');
}

/** True for the errors a view should swallow: navigation aborts. */
export function isAbort(error) {
  return error?.name === 'AbortError';
}
