// notifq's in-app inbox client for the browser: one WebSocket to GET /ws, speaking the protocol of
// docs/inapp.md. No dependencies and no build step; any page may load it from /inbox.js (served with
// Access-Control-Allow-Origin: *), and the dashboard imports it from /assets/inbox.js. Usage: docs/inbox-js.md.
//
//   import { NotifqInbox } from 'https://notify.example.com/inbox.js';
//   const inbox = new NotifqInbox({ token, onNotification: (n) => show(n) });
//   inbox.connect();
//
// It is an ES module (it uses `export` and `import.meta`, which a classic <script src> cannot parse); once
// loaded it also sets `window.NotifqInbox`, for a page's scripts that are not modules.
//
// What it does for the page: AUTH first; an ACK for every notification on receipt (`autoAck`); repeated ids
// dropped (delivery is at least once); a PING every 25 s, and a new connection when no answer comes; after an
// unexpected close, reconnection with capped exponential backoff and jitter — but never after 4401 (bad or
// expired token) or 4403 (subscriber erased), which are reported through `onStatus`.

const PING_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000; // no frame at all this long after a PING: the connection is dead
const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_CAP_MS = 30_000;
const REMEMBERED_IDS = 10_000; // ids kept to drop repeats (the oldest are forgotten first)
const UNAUTHORIZED = 4401;
const FORBIDDEN = 4403;
const NORMAL = 1000;
const ID = /^[0-9]{1,19}$/;
// What the page did with a notification, so a repeat (its receipt was lost) gets the receipt again.
const SEEN = 0;
const ACKED = 1;
const READ = 2;

/**
 * The WebSocket URL: a ws:// or wss:// `url` as it is; an http(s) one is notifq's base address, whose /ws is
 * used (https://notify.example.com → wss://notify.example.com/ws); none: the server this file came from.
 */
export function socketUrl(url) {
  const here = globalThis.location?.href;
  const u = url ? new URL(url, here) : new URL('/ws', import.meta.url);
  if (u.protocol === 'http:' || u.protocol === 'https:') {
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    if (!u.pathname.endsWith('/ws')) u.pathname = `${u.pathname.replace(/\/+$/, '')}/ws`;
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`NotifqInbox: not a notifq address: ${url}`);
  u.hash = '';
  return u.href;
}

/** A page's handler that throws must not stop the client: report it (console) and carry on. */
function call(handler, ...args) {
  if (typeof handler !== 'function') return;
  try {
    handler(...args);
  } catch (error) {
    if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
    else setTimeout(() => { throw error; });
  }
}

export class NotifqInbox {
  #url;
  #token;
  #handlers;
  #autoAck;
  #pingMs;
  #socket = null;
  #running = false; // between connect() and close() (or a 4401 / 4403)
  #ready = false; // READY received on the current socket
  #generation = 0; // bumped by close(): a token still being fetched is then dropped
  #attempt = 0; // failed connections since the last READY
  #retryTimer = null;
  #pingTimer = null;
  #pongTimer = null;
  #seen = new Map(); // id -> SEEN | ACKED | READ
  #pending = new Map(); // receipts asked for while not connected: id -> 'ACK' | 'READ'
  #status = 'idle';

  /**
   * @param {object} options
   * @param {string | (() => string | Promise<string>)} options.token a subscriber token (POST /subscribers/{id}/token),
   *   or a function giving one, called before every connection (so a reconnection can use a fresh token)
   * @param {string} [options.url] notifq's address (https://notify.example.com) or its WebSocket URL; default: where
   *   this file was loaded from
   * @param {(notification: object, info: {replayed: boolean}) => void} [options.onNotification] once per id:
   *   `{id, category, subject, body, data, createdAt}`; `replayed` is true for the un-ACKed ones sent before READY
   * @param {(info: {replayed: number}) => void} [options.onReady] after each connection's replay
   * @param {(status: string, detail: object) => void} [options.onStatus] 'connecting', 'live', 'reconnecting'
   *   (detail {attempt, delay, code, reason}), 'unauthorized' (4401), 'forbidden' (4403), 'closed'
   * @param {(error: Error) => void} [options.onError] an ERROR frame from the server, a token function that failed, or
   *   a socket the browser refused; default: console.warn
   * @param {boolean} [options.autoAck=true] ACK each notification on receipt; false: call ack(id) yourself
   * @param {number} [options.pingInterval=25000] milliseconds between PINGs
   */
  constructor({ url, token, onNotification, onReady, onStatus, onError, autoAck = true, pingInterval = PING_MS } = {}) {
    if (typeof token !== 'string' && typeof token !== 'function') {
      throw new TypeError('NotifqInbox: `token` must be a subscriber token, or a function that returns one');
    }
    this.#url = socketUrl(url);
    this.#token = token;
    this.#handlers = { onNotification, onReady, onStatus, onError };
    this.#autoAck = autoAck;
    this.#pingMs = pingInterval;
  }

  /** The WebSocket URL in use. */
  get url() {
    return this.#url;
  }

  /** 'idle', 'connecting', 'live', 'reconnecting', 'unauthorized', 'forbidden' or 'closed'. */
  get status() {
    return this.#status;
  }

  /** Open the connection (again, after close() or a 4401 / 4403); does nothing while already running. */
  connect() {
    if (this.#running) return this;
    this.#running = true;
    this.#attempt = 0;
    globalThis.addEventListener?.('online', this.#onOnline);
    this.#open();
    return this;
  }

  /** Mark a notification read (a READ frame); sent after the next READY when not connected now. */
  read(id) {
    return this.#receipt('READ', id);
  }

  /** ACK a notification (only needed with autoAck: false). */
  ack(id) {
    return this.#receipt('ACK', id);
  }

  /** Close for good: no reconnection until connect() is called again. */
  close() {
    const socket = this.#socket;
    this.#generation += 1;
    this.#teardown();
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (socket) closeSocket(socket, NORMAL, 'client closed');
    this.#stop('closed', {});
  }

  async #open() {
    const generation = this.#generation;
    this.#setStatus('connecting', { attempt: this.#attempt });
    let token;
    try {
      token = typeof this.#token === 'function' ? await this.#token() : this.#token;
      if (typeof token !== 'string' || !token) throw new TypeError('the token function gave no token');
    } catch (error) {
      if (generation !== this.#generation) return;
      this.#error(error instanceof Error ? error : new Error(String(error)));
      this.#retry({ code: 0, reason: 'no token' });
      return;
    }
    if (generation !== this.#generation || !this.#running) return;
    let socket;
    try {
      socket = new WebSocket(this.#url);
    } catch (error) {
      // Refused at once, which no retry changes: a ws:// address from an https:// page, a blocked port.
      this.#error(error);
      this.#stop('closed', { code: 0, reason: error.message });
      return;
    }
    this.#socket = socket;
    this.#ready = false;
    socket.onopen = () => {
      if (socket !== this.#socket) return;
      socket.send(JSON.stringify({ type: 'AUTH', token }));
      this.#pingTimer = setInterval(() => this.#ping(socket), this.#pingMs);
    };
    socket.onmessage = (event) => socket === this.#socket && this.#frame(event.data);
    socket.onclose = (event) => socket === this.#socket && this.#closed(event.code, event.reason);
  }

  #frame(data) {
    clearTimeout(this.#pongTimer); // any frame shows the connection is alive
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame?.type === 'NOTIFICATION') this.#notification(frame);
    else if (frame?.type === 'READY') {
      this.#ready = true;
      this.#attempt = 0;
      for (const [id, type] of this.#pending) this.#send({ type, id });
      this.#pending.clear();
      this.#setStatus('live', { replayed: frame.replayed });
      call(this.#handlers.onReady, { replayed: frame.replayed });
    } else if (frame?.type === 'ERROR') this.#error(new Error(String(frame.message)));
    // PONG, and frame types this version does not know, need nothing.
  }

  #notification(frame) {
    const id = String(frame.id);
    const state = this.#seen.get(id);
    if (state !== undefined) {
      // A repeat: the server has not recorded our receipt (yet). Send it again; do not show the notification twice.
      if (state === READ) this.#send({ type: 'READ', id });
      else if (state === ACKED) this.#send({ type: 'ACK', id });
      return;
    }
    this.#remember(id, this.#autoAck ? ACKED : SEEN);
    if (this.#autoAck) this.#send({ type: 'ACK', id });
    const notification = { ...frame, id };
    delete notification.type;
    call(this.#handlers.onNotification, notification, { replayed: !this.#ready });
  }

  #remember(id, state) {
    this.#seen.delete(id); // re-inserted: most recent last
    this.#seen.set(id, state);
    if (this.#seen.size > REMEMBERED_IDS) this.#seen.delete(this.#seen.keys().next().value);
  }

  #receipt(type, id) {
    const text = String(id);
    if (!ID.test(text)) throw new TypeError(`NotifqInbox: not a notification id: ${id}`);
    const before = this.#seen.get(text) ?? SEEN;
    this.#remember(text, type === 'READ' ? READ : Math.max(before, ACKED));
    if (this.#ready && this.#send({ type, id: text })) return true;
    if (this.#pending.get(text) !== 'READ') this.#pending.set(text, type); // a READ implies the ACK
    return false;
  }

  #send(frame) {
    const socket = this.#socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  #ping(socket) {
    if (socket !== this.#socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send('{"type":"PING"}');
    clearTimeout(this.#pongTimer);
    this.#pongTimer = setTimeout(() => {
      if (socket !== this.#socket) return;
      // A half-open connection may take minutes to report its close: give up on it now.
      this.#teardown();
      closeSocket(socket, 4000, 'no answer to PING');
      this.#retry({ code: 0, reason: 'no answer to PING' });
    }, PONG_TIMEOUT_MS);
  }

  #closed(code, reason) {
    this.#teardown();
    if (!this.#running) return;
    if (code === UNAUTHORIZED || code === FORBIDDEN) this.#stop(code === UNAUTHORIZED ? 'unauthorized' : 'forbidden', { code, reason });
    else this.#retry({ code, reason });
  }

  /** No more reconnections (until connect()). */
  #stop(status, detail) {
    this.#running = false;
    globalThis.removeEventListener?.('online', this.#onOnline);
    this.#setStatus(status, detail);
  }

  /** Wait, then connect again: 0.5-1 s, 1-2 s, 2-4 s, ... up to 15-30 s (half fixed, half random). */
  #retry(detail) {
    if (!this.#running) return;
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** this.#attempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.#attempt += 1;
    this.#setStatus('reconnecting', { ...detail, attempt: this.#attempt, delay });
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#open();
    }, delay);
  }

  /** Back online: try now rather than at the end of the backoff. */
  #onOnline = () => {
    if (!this.#running || this.#retryTimer === null) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#open();
  };

  #teardown() {
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pongTimer);
    this.#pingTimer = null;
    this.#pongTimer = null;
    this.#socket = null;
    this.#ready = false;
  }

  #error(error) {
    if (this.#handlers.onError) call(this.#handlers.onError, error);
    else console.warn('notifq inbox:', error.message);
  }

  #setStatus(status, detail) {
    this.#status = status;
    call(this.#handlers.onStatus, status, detail);
  }
}

/** Close a socket without the browser's "closed before the connection is established" error. */
function closeSocket(socket, code, reason) {
  socket.onmessage = null;
  socket.onclose = null;
  if (socket.readyState === WebSocket.CONNECTING) socket.onopen = () => socket.close(code, reason);
  else if (socket.readyState === WebSocket.OPEN) socket.close(code, reason);
}

globalThis.NotifqInbox = NotifqInbox;
