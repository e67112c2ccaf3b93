// The API client: the session token, JSON requests, and the error shape.
//
// The token lives in sessionStorage only (gone when the tab closes, not shared with other
// tabs, never in localStorage), travels only in the Authorization header, and never in a
// URL: the server may log URLs, and browsers keep them in history.

const SESSION_KEY = 'notifq.session';

/** Raised for every non-2xx answer; carries the API's `{error: {code, message, details}}`. */
export class ApiError extends Error {
  constructor(status, code, message, details = null, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

let onUnauthorized = () => {};

/** The app registers what a 401 does (forget the token, show the login form). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** The current session `{token, expiresAt}`, or null (none, unreadable, or expired). */
export function getSession() {
  let session = null;
  try {
    session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
  } catch {
    session = null;
  }
  if (!session?.token) return null;
  if (session.expiresAt && Date.parse(session.expiresAt) <= Date.now()) {
    clearSession();
    return null;
  }
  return session;
}

export function saveSession(token, expiresAt) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token, expiresAt }));
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

/** Headers for an authenticated call; calls the 401 handler (and throws) when there is no session. */
export function authHeaders(extra = {}) {
  const session = getSession();
  if (!session) {
    onUnauthorized();
    throw new ApiError(401, 'unauthorized', 'Your session has ended. Please log in again.');
  }
  return { ...extra, Authorization: `Bearer ${session.token}` };
}

/** The whole 401 path, shared with the event-stream reader. */
export function handleUnauthorized() {
  clearSession();
  onUnauthorized();
}

/** Turn an error response into an ApiError (also when the body is not the API's JSON). */
export async function toApiError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body?.error || {};
  const retryAfter = Number(response.headers.get('Retry-After')) || null;
  return new ApiError(
    response.status,
    error.code || `http_${response.status}`,
    error.message || `The server answered ${response.status} ${response.statusText}`.trim(),
    error.details ?? null,
    retryAfter,
  );
}

/**
 * One authenticated JSON request; resolves to `{data, response}`.
 * `body` is sent as JSON; `signal` aborts it; a 401 forgets the session and shows the login form.
 */
export async function request(path, { method = 'GET', body, signal, headers = {} } = {}) {
  const allHeaders = authHeaders({ Accept: 'application/json', ...headers });
  if (body !== undefined) allHeaders['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: allHeaders,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
      credentials: 'omit', // nothing rides on cookies: the bearer header is the only credential
    });
  } catch (error) {
    if (error?.name === 'AbortError') throw error;
    throw new ApiError(0, 'network_error', 'The server could not be reached. Check your connection.');
  }
  if (response.status === 401) {
    handleUnauthorized();
    throw await toApiError(response);
  }
  if (!response.ok) throw await toApiError(response);
  const data = response.status === 204 ? null : await readJson(response);
  return { data, response };
}

/**
 * A 2xx body as JSON. Anything else (a proxy's HTML page, a truncated body) is an ApiError like any other
 * failed call, so views show their usual message instead of a bare SyntaxError.
 */
async function readJson(response) {
  try {
    return await response.json();
  } catch (error) {
    if (error?.name === 'AbortError') throw error;
    throw new ApiError(response.status, 'bad_response', `The server answered ${response.status} without readable JSON.`);
  }
}

/** Like `request`, resolving to the JSON body only. */
export async function api(path, options) {
  return (await request(path, options)).data;
}

/** POST /auth/login; stores the session. Errors (401, 429, 422) are thrown for the form to show. */
export async function login(email, password) {
  let response;
  try {
    response = await fetch('/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ email, password }),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    throw new ApiError(0, 'network_error', 'The server could not be reached. Check your connection.');
  }
  if (!response.ok) throw await toApiError(response);
  const data = await readJson(response);
  if (typeof data?.token !== 'string') throw new ApiError(response.status, 'bad_response', 'The login answer holds no token.');
  saveSession(data.token, data.expiresAt);
  return data;
}

/**
 * POST /auth/logout, then forget the session: the token is revoked on the server, so a copy of
 * it (a shared machine, a leaked screenshot of devtools) stops working too. The local session is
 * forgotten even when the server cannot be reached.
 */
export async function logout() {
  const session = getSession();
  clearSession();
  if (!session) return;
  try {
    await fetch('/auth/logout', {
      method: 'POST',
      headers: { Authorization: `Bearer ${session.token}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    // Offline: the token still expires on its own.
  }
}

let spec = null;

/**
 * The query parameters an operation of this server takes, from its served /openapi.json (read once per page
 * load), or null when the document cannot be read. Lets a page offer a filter only where the server has it:
 * a server that ignores an unknown parameter would otherwise answer as if the filter applied.
 */
export async function queryParameters(operationId) {
  spec ??= fetch('/openapi.json', { headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'omit' })
    .then((r) => (r.ok ? r.json() : null))
    .catch(() => null);
  const doc = await spec;
  if (!doc?.paths) {
    spec = null; // try again next time
    return null;
  }
  for (const item of Object.values(doc.paths)) {
    for (const op of Object.values(item)) {
      if (op?.operationId === operationId) return new Set((op.parameters || []).filter((p) => p.in === 'query').map((p) => p.name));
    }
  }
  return new Set();
}
