// Jobs: the list with live status, and a job's page — stage, step and
// epoch, the loss curve (uPlot) with evaluation loss, tokens per second,
// ETA, cost so far against the estimate, the event timeline, cancel, and
// the adapter's files. Polling is polite: every 2 s while the job runs and
// the tab is visible, every 20 s while it is hidden, never once it ended.
import * as api from './api.js';
import { h, replace, loading, empty, failure, poll, confirm, announce, bytes, int, usd, seconds, date, statusBadge, terminal } from './ui.js';

export async function jobsPage(main, ctx) {
  document.title = 'Jobs · Bright Run';
  const list = h('div', { id: 'job-list' }, loading('your jobs'));
  main.append(h('h1', {}, 'Jobs'), h('p', {}, h('a', { class: 'button primary', href: '#/configure' }, 'Train a new model')), list);
  let shown = false;
  const refresh = async () => {
    let jobs;
    try {
      jobs = await api.all('/v1/jobs', 'jobs', { signal: ctx.signal });
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      if (!shown) replace(list, failure(err, refresh));
      throw err;
    }
    shown = true;
    replace(list, jobTable(jobs));
    return jobs.some((j) => !terminal(j.status)) ? 2000 : 15000;
  };
  ctx.onLeave(poll(refresh, { visibleMs: 2000, hiddenMs: 30000 }));
}

function jobTable(jobs) {
  if (jobs.length === 0) return empty('No jobs yet. Train a model on a ready dataset to see it here.', h('a', { href: '#/configure' }, 'Train a model'));
  return h('table', { class: 'list' },
    h('caption', { class: 'sr-only' }, 'Your jobs, newest first'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Job'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Progress'),
      h('th', { scope: 'col' }, 'GPU'), h('th', { scope: 'col' }, 'Cost so far'), h('th', { scope: 'col' }, 'Estimate'), h('th', { scope: 'col' }, 'Created'))),
    h('tbody', {}, jobs.map((j) => {
      const p = j.progress;
      const cost = j.cost || j.cost_so_far;
      return h('tr', { 'data-id': j.id },
        h('td', {}, h('a', { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.name || j.id)),
        h('td', {}, statusBadge(j.status), j.stage && !terminal(j.status) ? ` (${j.stage})` : ''),
        h('td', {}, p ? `step ${int(p.step)} of ${int(p.total_steps)}` : j.wait ? `waiting, place ${int(j.wait.position)}` : '—'),
        h('td', {}, j.gpu_type),
        h('td', {}, cost ? usd(cost.usd) : '—'),
        h('td', {}, j.estimate ? `${usd(j.estimate.cost_usd.low)}–${usd(j.estimate.cost_usd.high)}` : '—'),
        h('td', {}, date(j.created_at)));
    })));
}

export async function jobPage(main, ctx, id) {
  document.title = 'Job · Bright Run';
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const heading = h('h1', {}, 'Job');
  const summary = h('div', { id: 'job-summary' }, loading('the job'));
  const chartBox = h('div', { id: 'loss-chart', class: 'chart', role: 'img', 'aria-label': 'Loss curve: no points yet', 'data-points': '0' });
  const chartNote = h('p', { class: 'help', id: 'loss-note' }, 'The loss appears here once training starts.');
  const events = h('div', { id: 'events' }, loading('the events'));
  const artifacts = h('div', { id: 'artifacts' });
  const actions = h('div', { id: 'job-actions' });
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, '← Jobs')),
    heading, summary, actions,
    h('section', { 'aria-labelledby': 'loss-h' }, h('h2', { id: 'loss-h' }, 'Loss'), h('figure', {}, chartBox, h('figcaption', {}, chartNote))),
    h('section', { 'aria-labelledby': 'art-h' }, h('h2', { id: 'art-h' }, 'Adapter'), artifacts),
    h('section', { 'aria-labelledby': 'ev-h' }, h('h2', { id: 'ev-h' }, 'Timeline'), events));

  const chart = lossChart(chartBox);
  ctx.onLeave(() => chart.destroy());
  let job = null;
  let artifactsShown = false;
  let actionsFor = '';

  const refresh = async () => {
    let metrics, evs;
    try {
      [job, metrics, evs] = await Promise.all([
        api.get(path, { signal: ctx.signal }),
        api.all(`${path}/metrics`, 'metrics', { signal: ctx.signal }),
        api.all(`${path}/events`, 'events', { signal: ctx.signal }),
      ]);
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      if (err.status === 404) {
        replace(summary, empty('There is no such job.', h('a', { href: '#/jobs' }, 'Back to your jobs')));
        return false;
      }
      if (!job) replace(summary, failure(err, refresh));
      throw err;
    }
    heading.textContent = job.name || job.id;
    document.title = `${job.name || job.id} · Bright Run`;
    replace(summary, jobSummary(job));
    chart.set(metrics);
    chartBox.dataset.points = String(metrics.length);
    chartBox.dataset.evalPoints = String(metrics.filter((m) => m.eval_loss != null).length);
    const last = metrics[metrics.length - 1];
    chartBox.setAttribute('aria-label', metrics.length
      ? `Loss curve: ${metrics.length} points, loss ${last.loss.toFixed(4)} at step ${last.step}${metrics.some((m) => m.eval_loss != null) ? ', with evaluation loss' : ''}`
      : 'Loss curve: no points yet');
    chartNote.textContent = metrics.length ? 'Training loss per step (line) and evaluation loss (points) when the job evaluates.' : 'The loss appears here once training starts.';
    replace(events, timeline(evs));
    const actionsKey = `${job.status}`;
    if (actionsKey !== actionsFor) {
      actionsFor = actionsKey;
      replace(actions, terminal(job.status) || job.status === 'cancel_requested' ? null : cancelButton(job, refresh));
    }
    if (terminal(job.status)) {
      if (!artifactsShown) {
        artifactsShown = true;
        await showArtifacts(path, job, artifacts, ctx);
        announce(`The job ${job.status}.`);
      }
      return false;
    }
    replace(artifacts, h('p', { class: 'help' }, 'The adapter’s files appear here when the job completes.'));
    return true;
  };
  ctx.onLeave(poll(refresh, { visibleMs: 2000, hiddenMs: 20000 }));
}

function jobSummary(j) {
  const p = j.progress || {};
  const est = j.estimate;
  const cost = j.cost || j.cost_so_far;
  const bar = p.total_steps
    ? h('div', { class: 'progress' }, h('progress', { max: p.total_steps, value: p.step, 'aria-label': 'Training progress' }), h('span', { class: 'progress-text' }, `step ${int(p.step)} of ${int(p.total_steps)}`))
    : null;
  return h('div', {},
    h('p', { class: 'job-status' }, statusBadge(j.status), j.stage && !terminal(j.status) ? h('span', { class: 'stage' }, ` stage: ${j.stage}`) : ''),
    j.wait && j.status === 'queued' ? h('p', { class: 'state wait', role: 'status' }, `Place ${int(j.wait.position)} in line: this job ${j.wait.message}.`) : null,
    j.error ? h('div', { class: 'state error', role: 'alert' }, h('p', {}, h('strong', {}, `${j.error.code}: `), j.error.message), j.error.advice ? h('p', {}, j.error.advice) : null) : null,
    bar,
    h('dl', { class: 'facts' },
      fact('Step', p.total_steps ? `${int(p.step)} of ${int(p.total_steps)}` : '—'),
      fact('Epoch', p.epoch !== undefined ? p.epoch.toFixed(2) : '—'),
      fact('Loss', p.loss !== undefined ? p.loss.toFixed(4) : '—'),
      fact('Tokens per second', p.tokens_per_second ? int(Math.round(p.tokens_per_second)) : '—'),
      fact('Time left', terminal(j.status) ? '—' : p.eta_seconds != null ? seconds(p.eta_seconds) : '—'),
      fact(j.cost ? 'Cost' : 'Cost so far', cost ? usd(cost.usd) : '—'),
      fact('Estimate', est ? `${usd(est.cost_usd.low)}–${usd(est.cost_usd.high)}, ${seconds(est.duration_seconds.expected)}` : '—'),
      fact('Budget', j.budget_usd != null ? usd(j.budget_usd) : 'none'),
      fact('Evaluation', !j.validation ? 'none' : j.validation.dataset_id ? `on dataset ${j.validation.dataset_id}` : j.validation.split ? `${Math.round(j.validation.split * 100)} % held out` : 'none'),
      fact('GPU', j.gpu_type), fact('Preset', j.preset), fact('Model', j.base_model),
      fact('Dataset', h('a', { href: `#/datasets/${encodeURIComponent(j.dataset_id)}` }, j.dataset_id)),
      fact('Created', date(j.created_at))));
}

function fact(k, v) {
  return h('div', {}, h('dt', {}, k), h('dd', {}, v));
}

function cancelButton(job, refresh) {
  const err = h('div', { 'aria-live': 'polite' });
  const btn = h('button', {
    type: 'button', class: 'danger', id: 'cancel-job', onclick: async () => {
      const ok = await confirm({ title: 'Cancel this job?', body: h('p', {}, 'Training stops; what it cost so far is still billed, and no adapter is kept.'), confirmLabel: 'Cancel the job', danger: true });
      if (!ok) { btn.focus(); return; }
      try {
        await api.post(`/v1/jobs/${encodeURIComponent(job.id)}/cancel`, {});
        announce('Cancellation requested.');
        btn.disabled = true;
        refresh();
      } catch (e) {
        replace(err, h('p', { class: 'field-error', role: 'alert' }, `Not cancelled: ${e.message}`));
      }
    },
  }, 'Cancel job…');
  return h('div', {}, btn, err);
}

function timeline(evs) {
  if (evs.length === 0) return empty('Nothing has happened yet.');
  return h('ol', { class: 'timeline' }, evs.map((e) => h('li', {},
    h('time', { datetime: e.time }, date(e.time)), ' ',
    h('strong', {}, e.type.replaceAll('_', ' ')),
    e.message ? ` — ${e.message}` : e.data && e.data.stage ? ` — ${e.data.stage}` : '')));
}

async function showArtifacts(path, job, box, ctx) {
  if (job.status !== 'completed') {
    replace(box, h('p', {}, job.status === 'cancelled' ? 'The job was cancelled: it has no adapter.' : 'The job failed: it has no adapter.'));
    return;
  }
  replace(box, loading('the adapter’s files'));
  try {
    const a = await api.get(`${path}/artifacts`, { signal: ctx.signal });
    const files = a.artifacts || [];
    replace(box, files.length === 0 ? empty('The job completed without files.') : h('table', { class: 'list artifacts' },
      h('caption', { class: 'sr-only' }, 'The adapter’s files'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'File'), h('th', { scope: 'col', class: 'num' }, 'Size'), h('th', { scope: 'col' }, 'SHA-256'))),
      h('tbody', {}, files.map((f) => h('tr', {},
        h('td', {}, h('a', { href: f.download.url, download: f.name, 'data-sha256': f.sha256 }, `Download ${f.name}`)),
        h('td', { class: 'num' }, bytes(f.size_bytes)),
        h('td', {}, h('code', { class: 'sha' }, f.sha256)))))),
    h('p', { class: 'help' }, `Links stay valid until ${date(files[0] && files[0].download.expires_at)}; reload the page for fresh ones. Check a download with: sha256sum <file>.`));
  } catch (err) {
    if (err.name !== 'AbortError') replace(box, failure(err, () => showArtifacts(path, job, box, ctx)));
  }
}

// lossChart draws the metric points with uPlot: the training loss as a
// line, the evaluation loss as points, over the step.
function lossChart(el) {
  let plot = null;
  const width = () => Math.max(300, Math.min(900, el.clientWidth || 700));
  const opts = () => ({
    width: width(), height: 260,
    scales: { x: { time: false } },
    axes: [{ label: 'step' }, { label: 'loss' }],
    series: [
      { label: 'step' },
      { label: 'training loss', stroke: '#1d4ed8', width: 2 },
      { label: 'evaluation loss', stroke: '#b45309', width: 0, paths: () => null, points: { show: true, size: 8, fill: '#b45309' } },
    ],
  });
  // The curve follows the page's width.
  const resized = new ResizeObserver(() => { if (plot) plot.setSize({ width: width(), height: 260 }); });
  resized.observe(el);
  return {
    set(metrics) {
      if (typeof uPlot === 'undefined') return;
      const steps = metrics.map((m) => m.step);
      const data = [steps, metrics.map((m) => m.loss), metrics.map((m) => (m.eval_loss == null ? null : m.eval_loss))];
      if (!plot) plot = new uPlot(opts(), data, el); // eslint-disable-line no-undef
      else plot.setData(data);
    },
    destroy() {
      resized.disconnect();
      if (plot) plot.destroy();
    },
  };
}
