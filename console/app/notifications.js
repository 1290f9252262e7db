// Notifications: completed, failed, over budget. The badge counts those
// newer than the newest the user has seen on this page (a timestamp kept in
// localStorage: no secret).
import * as api from './api.js';
import { h, replace, loading, empty, failure, date } from './ui.js';

const seenKey = 'brightrun.notifications.seen';

async function latest(signal) {
  const page = await api.get('/v1/notifications?limit=100', { signal });
  return page.notifications || [];
}

export async function unseenCount() {
  const seen = localStorage.getItem(seenKey) || '';
  return (await latest()).filter((n) => n.created_at > seen).length;
}

export async function notificationsPage(main, ctx) {
  document.title = 'Notifications · Bright Run';
  const list = h('div', { id: 'notification-list' }, loading('your notifications'));
  main.append(h('h1', {}, 'Notifications'), list);
  const show = async () => {
    let ns;
    try {
      ns = await latest(ctx.signal);
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      replace(list, failure(err, show));
      return;
    }
    const seen = localStorage.getItem(seenKey) || '';
    if (ns.length === 0) {
      replace(list, empty('No notifications yet. You will find here every job that completes, fails or goes over its budget.'));
      return;
    }
    replace(list, h('ul', { class: 'notifications' }, ns.map((n) => h('li', { class: n.created_at > seen ? 'unseen' : '' },
      h('span', { class: `kind kind-${n.type}` }, n.type.replaceAll('_', ' ')), ' ',
      n.job_id ? h('a', { href: `#/jobs/${encodeURIComponent(n.job_id)}` }, n.message) : n.message, ' ',
      h('time', { datetime: n.created_at }, date(n.created_at)),
      n.created_at > seen ? h('span', { class: 'sr-only' }, ' (new)') : null))));
    const newest = ns.map((n) => n.created_at).sort().pop();
    if (newest > seen) localStorage.setItem(seenKey, newest);
    ctx.refreshBadge().catch(() => {});
  };
  await show();
}
