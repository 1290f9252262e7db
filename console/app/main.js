// The console's shell: settings, sign-in, navigation (hash routes, so the
// server serves one page), the notifications badge, and one page at a time
// with its polling stopped when the user leaves it.
import * as api from './api.js';
import { h, replace, failure, poll } from './ui.js';
import { datasetsPage, datasetPage } from './datasets.js';
import { configurePage } from './configure.js';
import { jobsPage, jobPage } from './jobs.js';
import { notificationsPage, unseenCount } from './notifications.js';
import * as cognito from './cognito.js';

const routes = [
  [/^#\/datasets$/, 'datasets', datasetsPage],
  [/^#\/datasets\/([^/?]+)$/, 'datasets', datasetPage],
  [/^#\/configure(?:\?(.*))?$/, 'configure', configurePage],
  [/^#\/jobs$/, 'jobs', jobsPage],
  [/^#\/jobs\/([^/?]+)$/, 'jobs', jobPage],
  [/^#\/notifications$/, 'notifications', notificationsPage],
];

const main = document.getElementById('main');
let leave = null; // the current page's cleanup
let stopBadge = null;

function signInPage() {
  const cfg = api.getConfig();
  document.title = 'Sign in · Bright Run';
  if (cfg.auth === 'cognito') {
    replace(main, h('section', { class: 'signin' },
      h('h1', {}, 'Sign in to Bright Run'),
      h('p', {}, 'You sign in with your organisation’s account on the sign-in page.'),
      h('button', { type: 'button', class: 'primary', onclick: () => cognito.signIn(cfg.cognito) }, 'Continue to sign-in')));
    main.querySelector('h1').focus();
    return;
  }
  const err = h('p', { id: 'token-error', class: 'field-error', role: 'alert' });
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'token-help token-error' });
  const form = h('form', { class: 'signin', novalidate: true },
    h('h1', { tabindex: '-1' }, 'Sign in to Bright Run'),
    h('label', { for: 'token' }, 'Access token'),
    input,
    h('p', { id: 'token-help', class: 'help' }, 'The local stack prints it in its banner when it starts (“token …”; dev-token unless BRIGHTRUN_DEV_TOKENS says otherwise).'),
    err,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) {
      err.textContent = 'Enter the token.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    api.setToken(t);
    try {
      await api.get('/v1/presets', { signingIn: true });
    } catch (e2) {
      api.signOut();
      err.textContent = e2.status === 401 ? 'That token was not accepted: copy it from the local stack’s banner.' : e2.message;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    if (!location.hash || location.hash === '#/signin') location.hash = '#/datasets';
    route();
  });
  replace(main, form);
  input.focus();
}

async function route() {
  if (leave) { leave(); leave = null; }
  const nav = document.getElementById('nav');
  if (!api.signedIn()) {
    nav.hidden = true;
    if (stopBadge) { stopBadge(); stopBadge = null; }
    signInPage();
    return;
  }
  nav.hidden = false;
  if (!stopBadge) stopBadge = poll(refreshBadge, { visibleMs: 10000, hiddenMs: 60000 });
  const hash = location.hash || '#/datasets';
  const found = routes.find(([re]) => re.test(hash));
  if (!found) {
    location.replace('#/datasets');
    return;
  }
  const [re, section, page] = found;
  const args = hash.match(re).slice(1).map((a) => (a === undefined ? '' : decodeURIComponent(a)));
  for (const a of nav.querySelectorAll('a[data-section]')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const cleanups = [];
  const ctrl = new AbortController();
  leave = () => { ctrl.abort(); cleanups.forEach((f) => f()); };
  const ctx = { signal: ctrl.signal, onLeave: (f) => cleanups.push(f), refreshBadge };
  main.replaceChildren();
  try {
    await page(main, ctx, ...args);
  } catch (err) {
    if (err.name !== 'AbortError') replace(main, failure(err, route));
  }
  // Move focus to the new page's heading, as a page load would.
  const h1 = main.querySelector('h1');
  if (h1 && !main.contains(document.activeElement)) {
    h1.setAttribute('tabindex', '-1');
    h1.focus();
  }
}

async function refreshBadge() {
  const n = await unseenCount();
  const badge = document.getElementById('badge');
  badge.hidden = n === 0;
  badge.textContent = n === 0 ? '' : `${n} new`;
}

async function start() {
  try {
    await api.loadConfig();
    if (api.getConfig().auth === 'cognito') await cognito.finishSignIn(api.getConfig().cognito);
  } catch (err) {
    replace(main, failure(err, () => location.reload(), 'Reload the page; if it keeps failing, the console is not deployed correctly.'));
    return;
  }
  api.whenUnauthorized(() => {
    api.signOut();
    route();
  });
  document.getElementById('signout').addEventListener('click', () => {
    api.signOut();
    if (api.getConfig().auth === 'cognito') cognito.signOut(api.getConfig().cognito);
    else { location.hash = '#/signin'; route(); }
  });
  window.addEventListener('hashchange', route);
  route();
}

start();
