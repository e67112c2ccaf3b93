// The dashboard's entry point: session gate, hash router, top bar.
//
// Navigation is hash-based (#/overview, #/campaigns, #/campaigns/<id>, #/notifications?status=failed,
// #/notifications/<id>, #/dead-letters, #/suppressions, #/webhooks, #/webhooks/<id>, #/api-keys, #/new, #/load-test, #/inbox, #/workers), so the back button works and no server
// routes are needed. What follows a "?" is the view's `query` (its filters), not part of the route. Each view gets an AbortSignal
// that fires when the reader navigates away: it cancels the view's requests, event streams
// and timers, so nothing keeps running for a page no longer shown.

import { clearSession, getSession, logout as revokeSession, setUnauthorizedHandler } from './api.js';
import { renderApiKeys } from './view-api-keys.js';
import { pageHeading } from './components.js';
import { h } from './dom.js';
import { renderCampaign } from './view-campaign.js';
import { renderCampaigns } from './view-campaigns.js';
import { renderDeadLetters } from './view-dead-letters.js';
import { renderInbox } from './view-inbox.js';
import { renderNotification } from './view-notification.js';
import { renderNotifications } from './view-notifications.js';
import { renderOverview } from './view-overview.js';
import { renderLoadTest } from './view-loadtest.js';
import { renderLogin } from './view-login.js';
import { renderNew } from './view-new.js';
import { renderSuppressions } from './view-suppressions.js';
import { renderWebhook } from './view-webhook.js';
import { renderWebhooks } from './view-webhooks.js';
import { renderWorkers } from './view-workers.js';

const DEFAULT_ROUTE = '#/campaigns';

/** [pattern, render, title, nav link]: the first match wins; groups become `params`. */
const ROUTES = [
  [/^#\/overview$/, renderOverview, 'Overview', '#/overview'],
  [/^#\/campaigns\/?$/, renderCampaigns, 'Campaigns', '#/campaigns'],
  [/^#\/campaigns\/([0-9a-fA-F-]{1,64})$/, renderCampaign, 'Campaign', '#/campaigns'],
  [/^#\/notifications$/, renderNotifications, 'Notifications', '#/notifications'],
  [/^#\/notifications\/([0-9]{1,19})$/, renderNotification, 'Notification', '#/notifications'],
  [/^#\/dead-letters$/, renderDeadLetters, 'Dead letters', '#/dead-letters'],
  [/^#\/suppressions$/, renderSuppressions, 'Suppressions', '#/suppressions'],
  [/^#\/webhooks\/?$/, renderWebhooks, 'Webhooks', '#/webhooks'],
  [/^#\/webhooks\/([0-9a-fA-F-]{36})$/, renderWebhook, 'Webhook', '#/webhooks'],
  [/^#\/api-keys\/?$/, renderApiKeys, 'API keys', '#/api-keys'],
  [/^#\/new$/, renderNew, 'New campaign', '#/new'],
  [/^#\/load-test$/, renderLoadTest, 'Load test', '#/load-test'],
  [/^#\/inbox$/, renderInbox, 'Inbox', '#/inbox'],
  [/^#\/workers$/, renderWorkers, 'Workers', '#/workers'],
];

const main = document.getElementById('main');
let current = null; // the AbortController of the view on screen

/** Abort the view on screen (its requests, streams and timers). */
function leaveView() {
  current?.abort();
  current = null;
}

/** Render the view for the current hash, or the login form when there is no session. */
function route({ focus = false } = {}) {
  // Already at the login form (e.g. a 401 just sent us there): keep it and its notice;
  // the new address renders once the user has logged in.
  if (!getSession() && document.body.classList.contains('logged-out') && main.querySelector('#login-form')) return;
  leaveView();
  if (!getSession()) return showLogin('');
  document.body.classList.remove('logged-out');
  const hash = location.hash || DEFAULT_ROUTE;
  if (!location.hash) history.replaceState(null, '', DEFAULT_ROUTE);
  const cut = hash.indexOf('?');
  const routePart = cut === -1 ? hash : hash.slice(0, cut);
  const query = new URLSearchParams(cut === -1 ? '' : hash.slice(cut + 1));
  const match = ROUTES.map(([re, render, title, nav]) => ({ m: routePart.match(re), render, title, nav })).find((r) => r.m);
  markNav(match?.nav);
  current = new AbortController();
  if (!match) {
    document.title = 'Not found · notifq';
    main.replaceChildren(h('div', { className: 'card empty' }, pageHeading('Page not found'), h('a', { className: 'btn', href: DEFAULT_ROUTE }, 'All campaigns')));
  } else {
    document.title = `${match.title} · notifq`;
    match.render(main, { signal: current.signal, params: match.m.slice(1).map(decodeURIComponent), query });
  }
  // After a navigation (not the first load), move focus to the new page's heading so
  // keyboard and screen-reader users start at the top of the new content.
  if (focus) main.querySelector('h1')?.focus({ preventScroll: true });
  if (focus) window.scrollTo(0, 0);
}

/** The login form, in place of whatever was shown; afterwards the same address renders. */
function showLogin(notice) {
  leaveView();
  document.body.classList.add('logged-out');
  document.title = 'Sign in · notifq';
  markNav(null);
  renderLogin(main, { notice, onSuccess: () => route({ focus: true }) });
}

function markNav(active) {
  for (const link of document.querySelectorAll('.topbar nav a')) {
    if (link.getAttribute('href') === active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

async function logout() {
  await revokeSession();
  showLogin('You have been logged out.');
}

// A 401 from any call (expired or revoked token): forget it and ask to log in again.
setUnauthorizedHandler(() => {
  if (document.body.classList.contains('logged-out')) return;
  clearSession();
  showLogin('Your session has ended. Please log in again.');
});

document.getElementById('logout').addEventListener('click', logout);
// The skip link targets <main> without touching the hash (which is the router's).
document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener('hashchange', () => route({ focus: true }));
route();
