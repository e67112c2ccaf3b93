// Server-sent events over fetch().
//
// EventSource cannot send an Authorization header, and the token must never go in a URL,
// so the stream is read with fetch() + a body reader and parsed here (the text/event-stream
// format: `event:` / `data:` lines, a blank line ends an event, `:` starts a comment).
// The stream reconnects with exponential backoff; while it is down, an optional `poll`
// keeps the view fresh from the plain JSON endpoint, so a proxy that buffers streams, or a
// server without the endpoint, degrades to polling instead of freezing the page.

import { authHeaders, handleUnauthorized } from './api.js';
import { isAbort, sleep } from './dom.js';

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;
// The server sends a keepalive comment every 15 s; silence for this long means a dead connection.
const IDLE_TIMEOUT_MS = 45000;
const POLL_INTERVAL_MS = 2000;

/**
 * A parser fed with decoded text chunks; calls `dispatch({event, data, id})` per complete event.
 * Handles lines ending in \n, \r\n or \r, even when a chunk ends between \r and \n.
 */
export function createEventParser(dispatch) {
  let buffer = '';
  let eventType = '';
  let dataLines = [];
  let lastId = '';
  let started = false;

  function line(text) {
    if (text === '') {
      if (dataLines.length) dispatch({ event: eventType || 'message', data: dataLines.join('\n'), id: lastId });
      eventType = '';
      dataLines = [];
      return;
    }
    if (text.startsWith(':')) return; // a comment, e.g. the server's `: keepalive`
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') eventType = value;
    else if (field === 'data') dataLines.push(value);
    else if (field === 'id' && !value.includes('\0')) lastId = value;
    // `retry:` and unknown fields are ignored: the backoff below decides when to reconnect.
  }

  return function feed(chunk) {
    buffer += chunk;
    if (!started && buffer.length) {
      started = true;
      if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
    }
    // A trailing \r may be the first half of \r\n: keep it until the next chunk.
    const holdBack = buffer.endsWith('\r') ? 1 : 0;
    const usable = buffer.slice(0, buffer.length - holdBack);
    const lines = usable.split(/\r\n|\r|\n/);
    const rest = lines.pop(); // the incomplete last line
    buffer = rest + buffer.slice(buffer.length - holdBack);
    for (const l of lines) line(l);
  };
}

/**
 * Follow an SSE endpoint until `signal` aborts.
 *  onEvent({event, data})  for each event (data is the raw string)
 *  onState(state)          'connecting' | 'live' | 'reconnecting'
 *  poll()                  optional; called while disconnected (every 2 s) to keep data fresh
 * A 401 ends the session (login form); any other failure reconnects after 1 s, 2 s, 4 s … 30 s.
 */
export async function followEvents(path, { signal, onEvent, onState = () => {}, poll = null }) {
  let attempt = 0;
  while (!signal.aborted) {
    onState(attempt === 0 ? 'connecting' : 'reconnecting');
    let sawEvent = false;
    try {
      await readStream(path, signal, (event) => {
        sawEvent = true;
        onState('live');
        onEvent(event);
      });
    } catch (error) {
      if (signal.aborted || error?.code === 'unauthorized') return;
      // Anything else (network drop, idle timeout, HTTP error): reconnect below.
    }
    if (signal.aborted) return;
    attempt = sawEvent ? 1 : attempt + 1;
    onState('reconnecting');
    const delay = backoff(attempt);
    try {
      await waitPolling(delay, signal, poll);
    } catch (error) {
      if (isAbort(error) || signal.aborted) return;
      throw error;
    }
  }
}

/** 1 s, 2 s, 4 s … capped at 30 s, with ±20% jitter so many tabs do not reconnect in step. */
function backoff(attempt) {
  const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.max(0, attempt - 1));
  return base * (0.8 + Math.random() * 0.4);
}

/** Wait `ms`, calling `poll` right away and then every 2 s meanwhile. */
async function waitPolling(ms, signal, poll) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (poll) {
      try {
        await poll();
      } catch (error) {
        // The view reports its own errors; a failed poll must not end the reconnect loop.
        if (isAbort(error)) throw error;
      }
    }
    await sleep(Math.min(POLL_INTERVAL_MS, Math.max(0, until - Date.now())), signal);
  }
}

/** One connection: resolves when the server ends the stream, rejects on errors and aborts. */
async function readStream(path, outerSignal, onEvent) {
  const controller = new AbortController();
  const forward = () => controller.abort(outerSignal.reason);
  outerSignal.addEventListener('abort', forward, { once: true });
  let idleTimer = null;
  const touch = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => controller.abort(new DOMException('stream idle', 'TimeoutError')), IDLE_TIMEOUT_MS);
  };
  try {
    touch();
    const response = await fetch(path, {
      headers: authHeaders({ Accept: 'text/event-stream' }),
      signal: controller.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
    if (response.status === 401) {
      handleUnauthorized();
      const error = new Error('unauthorized');
      error.code = 'unauthorized';
      throw error;
    }
    const type = response.headers.get('Content-Type') || '';
    if (!response.ok || !type.startsWith('text/event-stream') || !response.body) {
      await response.body?.cancel();
      throw new Error(`event stream unavailable (HTTP ${response.status})`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const feed = createEventParser(onEvent);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      touch(); // keepalive comments count as life
      feed(decoder.decode(value, { stream: true }));
    }
    feed(decoder.decode());
  } finally {
    clearTimeout(idleTimer);
    outerSignal.removeEventListener('abort', forward);
    controller.abort(); // release the connection whatever happened
  }
}
