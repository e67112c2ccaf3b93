// The login form: POST /auth/login, then the app continues where the reader was going.

import { ApiError, login } from './api.js';
import { field, MessageArea } from './components.js';
import { fmtDuration, h } from './dom.js';

/**
 * Render the login card into `container`; `notice` explains why it is shown (session ended),
 * `onSuccess` runs after the token is stored.
 */
export function renderLogin(container, { notice = '', onSuccess }) {
  const email = field({
    id: 'login-email',
    label: 'Email',
    control: h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true, spellcheck: 'false' }),
  });
  const password = field({
    id: 'login-password',
    label: 'Password',
    control: h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true }),
  });
  const messages = new MessageArea('login-message');
  const submit = h('button', { type: 'submit', className: 'btn btn--primary btn--block' }, 'Log in');
  const form = h(
    'form',
    { className: 'card login__card', id: 'login-form', novalidate: true, 'aria-labelledby': 'login-title' },
    h('h1', { className: 'login__title', id: 'login-title', tabindex: '-1' }, 'Sign in to notifq'),
    h('p', { className: 'muted' }, 'Administrator access to campaigns, load tests and workers.'),
    messages.el,
    email.wrapper,
    password.wrapper,
    submit,
  );
  if (notice) messages.show('info', notice);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = { email: email.control.value.trim(), password: password.control.value };
    if (!values.email || !values.password) {
      messages.show('error', 'Enter your email and password.');
      (values.email ? password : email).control.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      await login(values.email, values.password);
      password.control.value = '';
      onSuccess();
    } catch (error) {
      messages.show('error', loginErrorText(error));
      password.control.select();
      password.control.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Log in';
    }
  });

  container.replaceChildren(h('div', { className: 'login' }, form));
  email.control.focus();
}

function loginErrorText(error) {
  if (!(error instanceof ApiError)) return 'Something went wrong. Please try again.';
  if (error.status === 401) return 'Wrong email or password.';
  if (error.status === 429) {
    const wait = error.retryAfter ? ` Try again in ${fmtDuration(error.retryAfter)}.` : ' Try again later.';
    return `Too many failed attempts.${wait}`;
  }
  return error.message;
}
