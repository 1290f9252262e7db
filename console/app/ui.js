// Small DOM helpers, formatting, the three states every page has (loading,
// empty, error with what to do next), a confirmation dialog and polite
// polling.

// h builds an element: h('a', {href: '#/x', class: 'c'}, 'text', child...).
// Attributes starting with "on" are listeners; null/false attributes and
// children are skipped.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;
export const uid = (prefix) => `${prefix}-${++ids}`;

// announce tells screen-reader users about something that happened
// elsewhere on the page (an estimate updated, an upload finished).
export function announce(text) {
  const el = document.getElementById('announce');
  el.textContent = '';
  setTimeout(() => { el.textContent = text; }, 50);
}

export function loading(what) {
  return h('p', { class: 'state loading', role: 'status' }, `Loading ${what}…`);
}

export function empty(text, action) {
  return h('div', { class: 'state empty' }, h('p', {}, text), action || null);
}

// failure shows an error with its message and a way on: Retry, by default.
export function failure(err, retry, next = 'Try again; if it keeps failing, check that the API is running.') {
  return h('div', { class: 'state error', role: 'alert' },
    h('p', {}, h('strong', {}, 'Something went wrong: '), err.message || String(err)),
    h('p', {}, next),
    retry ? h('button', { type: 'button', onclick: retry }, 'Retry') : null);
}

// confirm opens a modal dialog and resolves true when the user confirms.
export function confirm({ title, body, confirmLabel, danger = false }) {
  return new Promise((resolve) => {
    const titleID = uid('dialog-title');
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': titleID },
      h('h2', { id: titleID }, title),
      h('div', { class: 'dialog-body' }, body),
      h('div', { class: 'actions' },
        h('button', { type: 'button', value: 'cancel', onclick: () => dialog.close('cancel') }, 'Keep it as it is'),
        h('button', { type: 'button', class: danger ? 'danger' : 'primary', value: 'ok', onclick: () => dialog.close('ok') }, confirmLabel)));
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(dialog.returnValue === 'ok');
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// poll calls fn now and again every visibleMs while the tab is visible,
// every hiddenMs while it is hidden, backing off after errors, until the
// returned stop() is called or fn returns false. fn may return a number:
// the visible pace until its next call (slower while nothing changes).
export function poll(fn, { visibleMs = 2000, hiddenMs = 20000 } = {}) {
  let timer = null;
  let stopped = false;
  let failures = 0;
  let pace = visibleMs;
  const schedule = () => {
    if (stopped) return;
    const base = document.hidden ? Math.max(hiddenMs, pace) : pace;
    timer = setTimeout(tick, Math.min(base * 2 ** failures, 60000));
  };
  const tick = async () => {
    timer = null;
    try {
      const r = await fn();
      if (r === false) { stopped = true; return; }
      pace = typeof r === 'number' ? r : visibleMs;
      failures = 0;
    } catch (err) {
      if (err.name === 'AbortError') return;
      failures = Math.min(failures + 1, 5);
    }
    schedule();
  };
  const onVisible = () => {
    // Back in view: refresh now rather than at the slow pace.
    if (!document.hidden && timer !== null) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener('visibilitychange', onVisible);
  tick();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
  };
}

// Formatting.

export function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export const int = (n) => (n === undefined || n === null ? '—' : Number(n).toLocaleString('en-US'));

export function usd(n) {
  if (n === undefined || n === null) return '—';
  return `$${Number(n).toFixed(n < 10 ? 2 : 0)}`;
}

export function seconds(s) {
  if (s === undefined || s === null) return '—';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const hr = Math.floor(m / 60);
  return `${hr} h ${m % 60} min`;
}

export const range = (r, f) => (r ? `${f(r.low)}–${f(r.high)} (expected ${f(r.expected)})` : '—');

export function date(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' });
}

export function statusBadge(status) {
  return h('span', { class: `status status-${status}` }, status.replaceAll('_', ' '));
}

export const terminal = (status) => ['completed', 'failed', 'cancelled'].includes(status);
