// Datasets: the upload (drop or pick, the browser's check, progress,
// validation as it happens), the import from a link (https or s3://) and
// the list; a dataset's page with its
// statistics, the validation report and delete.
import * as api from './api.js';
import { check, upload, formats } from './upload.js';
import { h, replace, loading, empty, failure, poll, confirm, announce, bytes, int, date, statusBadge, uid } from './ui.js';

const busy = (s) => s === 'awaiting_upload' || s === 'importing' || s === 'validating';

export async function datasetsPage(main, ctx) {
  document.title = 'Datasets · Bright Run';
  const list = h('div', { id: 'dataset-list' }, loading('your datasets'));
  main.append(
    h('h1', {}, 'Datasets'),
    uploader((id) => { location.hash = `#/datasets/${encodeURIComponent(id)}`; }),
    h('h2', {}, 'Your datasets'),
    list);
  let shown = false;
  const refresh = async () => {
    let datasets;
    try {
      datasets = await api.all('/v1/datasets', 'datasets', { signal: ctx.signal });
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      if (!shown) replace(list, failure(err, refresh));
      throw err;
    }
    shown = true;
    replace(list, datasetTable(datasets));
    // Keep polling while something is uploading, importing or validating.
    return datasets.some((d) => busy(d.status)) ? 3000 : 15000;
  };
  ctx.onLeave(poll(refresh, { visibleMs: 3000, hiddenMs: 30000 }));
}

function datasetTable(datasets) {
  if (datasets.length === 0) {
    return empty('No datasets yet. Drop a JSONL file above (one {"messages": [...]} conversation per line) to add your first.');
  }
  return h('table', { class: 'list' },
    h('caption', { class: 'sr-only' }, 'Your datasets, newest first'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Format'), h('th', { scope: 'col' }, 'Status'),
      h('th', { scope: 'col', class: 'num' }, 'Examples'), h('th', { scope: 'col', class: 'num' }, 'Tokens (total)'),
      h('th', { scope: 'col', class: 'num' }, 'Tokens (trained)'), h('th', { scope: 'col', class: 'num' }, 'Size'),
      h('th', { scope: 'col' }, 'Uploaded'))),
    h('tbody', {}, datasets.map((d) => {
      const v = d.validation || {};
      return h('tr', { 'data-id': d.id },
        h('td', {}, h('a', { href: `#/datasets/${encodeURIComponent(d.id)}` }, d.name)),
        h('td', {}, (formats[d.format] || formats.messages).label),
        h('td', {}, statusBadge(d.status)),
        h('td', { class: 'num' }, int(v.examples)),
        h('td', { class: 'num' }, int(v.tokens && v.tokens.total)),
        h('td', { class: 'num' }, int(v.tokens && v.tokens.trained)),
        h('td', { class: 'num' }, bytes(d.size_bytes)),
        h('td', {}, date(d.created_at)));
    })));
}

// uploader is the drop zone and file picker, the browser's check, and the
// upload with its progress bar; done(id) runs once the file is stored.
function uploader(done) {
  const inputID = uid('file');
  const input = h('input', { id: inputID, type: 'file', accept: '.jsonl,application/jsonl,application/x-ndjson', class: 'sr-only-focusable' });
  const status = h('div', { class: 'upload-status', 'aria-live': 'polite' });
  const shape = h('p', { class: 'help', id: 'format-shape' });
  const formatSel = h('select', { id: 'f-format', name: 'format', 'aria-describedby': 'format-shape' },
    Object.entries(formats).map(([value, f]) => h('option', { value }, f.label)));
  const showShape = () => { shape.textContent = `One conversation per line: ${formats[formatSel.value].shape}. Up to 5 GiB.`; };
  formatSel.addEventListener('change', showShape);
  showShape();
  const zone = h('div', { class: 'dropzone' },
    h('div', { class: 'field' }, h('label', { for: 'f-format' }, 'Format of the file'), formatSel),
    h('p', {}, 'Drop a JSONL file here, or '),
    h('label', { for: inputID, class: 'button' }, 'Choose a file…'),
    input,
    shape);
  const section = h('section', { class: 'upload', 'aria-label': 'Upload a dataset' }, zone, importer(formatSel, done), status);

  const start = async (file) => {
    replace(status, h('p', {}, `Checking the first lines of ${file.name}…`));
    let result;
    try {
      result = await check(file, formatSel.value);
    } catch (err) {
      replace(status, failure(err, null, 'The file could not be read: pick it again.'));
      return;
    }
    if (result.problems.length > 0) {
      const go = h('button', { type: 'button', onclick: () => send(file) }, 'Upload anyway for the full report');
      replace(status, h('div', { class: 'state error', role: 'alert' },
        h('p', {}, h('strong', {}, `${file.name} does not look like a ${formats[formatSel.value].label} dataset.`), ' What the first lines show:'),
        h('ul', { class: 'problems' }, result.problems.slice(0, 10).map((p) => h('li', {}, p.line ? `Line ${p.line}: ${p.message}` : p.message))),
        h('p', {}, 'Fix the file and pick it again, or upload it as it is to see every problem in the validation report.'),
        go));
      go.focus();
      return;
    }
    send(file);
  };

  const send = async (file) => {
    const bar = h('progress', { max: file.size || 1, value: 0, 'aria-label': `Upload of ${file.name}` });
    const text = h('span', { class: 'progress-text' }, '0 %');
    const how = h('p', { class: 'help' });
    replace(status, h('p', {}, `Uploading ${file.name} (${bytes(file.size)})`), h('div', { class: 'progress' }, bar, text), how);
    try {
      const id = await upload(file, {
        format: formatSel.value,
        onPlan: (plan, resumed) => {
          how.textContent = plan.type === 'multipart'
            ? `${resumed ? 'Resuming: ' : ''}${plan.parts.length} part${plan.parts.length === 1 ? '' : 's'} of up to ${bytes(plan.part_size)}, several at a time.`
            : 'One request, straight to storage.';
        },
        onProgress: (sent, total) => {
          bar.value = sent;
          const pct = total ? Math.floor((100 * sent) / total) : 100;
          text.textContent = `${pct} %`;
          bar.setAttribute('aria-valuetext', `${pct} percent`);
        },
      });
      text.textContent = '100 % — uploaded';
      bar.dataset.done = 'true';
      announce(`${file.name} uploaded; validation is starting.`);
      done(id);
    } catch (err) {
      replace(status, failure(err, () => send(file), 'Nothing was lost: pick the same file again to resume, or press Retry.'));
    }
  };

  input.addEventListener('change', () => { if (input.files[0]) start(input.files[0]); input.value = ''; });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const f = e.dataTransfer.files[0];
    if (f) start(f);
  });
  return section;
}

// importer asks the server to copy a file from where it already is: an
// https link, or s3://bucket/key in a bucket this deployment imports from.
// The dataset is importing, then validating, as an upload is; done(id)
// runs once the server took the request.
function importer(formatSel, done) {
  const sourceID = uid('source');
  const source = h('input', { id: sourceID, type: 'text', name: 'source', inputmode: 'url', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'https://… or s3://bucket/key', 'aria-describedby': `${sourceID}-help` });
  const go = h('button', { type: 'submit' }, 'Import');
  const status = h('div', { class: 'import-status', 'aria-live': 'polite' });
  const form = h('form', { class: 'import', 'aria-label': 'Import a dataset from a link' },
    h('label', { for: sourceID }, 'Or import it from a link'),
    h('div', { class: 'inline' }, source, go),
    h('p', { class: 'help', id: `${sourceID}-help` }, 'The server copies the file (https, or s3:// in a bucket this deployment imports from) in the format chosen above, then checks it as an upload.'),
    status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = source.value.trim();
    if (!value) {
      replace(status, h('p', { class: 'state error', role: 'alert' }, 'Paste the link of the file first.'));
      source.focus();
      return;
    }
    go.disabled = true;
    replace(status, h('p', {}, 'Asking the server to copy it…'));
    try {
      const d = await api.post('/v1/datasets/import', { source: value, format: formatSel.value });
      announce(`${d.name} is being imported; validation follows.`);
      done(d.id);
    } catch (err) {
      replace(status, failure(err, null, 'Check the link: the server names what is wrong with it.'));
      source.focus();
    } finally {
      go.disabled = false;
    }
  });
  return form;
}

export async function datasetPage(main, ctx, id) {
  document.title = 'Dataset · Bright Run';
  const heading = h('h1', {}, 'Dataset');
  const body = h('div', {}, loading('the dataset'));
  main.append(h('p', { class: 'crumbs' }, h('a', { href: '#/datasets' }, '← Datasets')), heading, body);
  let reportShown = false;
  const refresh = async () => {
    let d;
    try {
      d = await api.get(`/v1/datasets/${encodeURIComponent(id)}`, { signal: ctx.signal });
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      replace(body, err.status === 404
        ? empty('There is no such dataset: it may have been deleted.', h('a', { href: '#/datasets' }, 'Back to your datasets'))
        : failure(err, refresh));
      return err.status === 404 ? false : true;
    }
    heading.textContent = d.name;
    document.title = `${d.name} · Bright Run`;
    if (busy(d.status)) {
      replace(body, h('p', { class: 'state loading', role: 'status' }, statusBadge(d.status), ' ',
        d.status === 'validating' ? 'Checking every line and counting tokens…'
          : d.status === 'importing' ? `Copying the file from ${d.source || 'its source'}…` : 'Waiting for the file to arrive…'));
      return true;
    }
    if (reportShown) return false;
    reportShown = true;
    replace(body, await datasetDetails(d, ctx));
    announce(`${d.name} is ${d.status}.`);
    return false;
  };
  ctx.onLeave(poll(refresh, { visibleMs: 1000, hiddenMs: 15000 }));
}

async function datasetDetails(d, ctx) {
  const v = d.validation || {};
  const t = v.tokens || {};
  const s = v.stats || {};
  const tpe = s.tokens_per_example || {};
  const parts = [
    h('p', {}, statusBadge(d.status), ' ',
      d.status === 'ready' ? 'Every line is valid: this dataset can train a model.' : d.error ? d.error : d.status === 'invalid' ? 'This dataset has problems: fix them in the file and upload it again.' : ''),
    h('dl', { class: 'facts' },
      fact('Examples', int(v.examples)), fact('Lines', int(v.lines)),
      fact('Tokens (total)', int(t.total)), fact('Tokens (trained: the assistant’s)', int(t.trained)),
      fact('Size', bytes(d.size_bytes)), fact(d.source ? 'Imported' : 'Uploaded', date(d.created_at)),
      ...(d.source ? [fact('Imported from', d.source)] : []),
      fact('Format', (formats[d.format] || formats.messages).label),
      fact('Tokens per example', tpe.max !== undefined ? `${int(tpe.min)} to ${int(tpe.max)} (median ${int(tpe.p50)})` : '—'),
      fact('Longer than the limit', s.max_seq_length ? `${int(s.examples_over_max_seq_length)} over ${int(s.max_seq_length)} tokens` : '—')),
  ];
  if (d.status === 'ready') parts.push(h('p', {}, h('a', { class: 'button primary', href: `#/configure?dataset=${encodeURIComponent(d.id)}` }, 'Train a model on this dataset')));
  const counts = { ...(v.error_counts || {}) };
  const warnings = v.warning_counts || {};
  if (Object.keys(counts).length + Object.keys(warnings).length > 0) {
    parts.push(h('h2', {}, 'Problems by kind'), h('table', { class: 'list counts' },
      h('caption', { class: 'sr-only' }, 'How many lines have each problem'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Code'), h('th', { scope: 'col' }, 'Severity'), h('th', { scope: 'col', class: 'num' }, 'Lines'))),
      h('tbody', {},
        Object.entries(counts).map(([c, n]) => h('tr', {}, h('td', {}, h('code', {}, c)), h('td', {}, 'error'), h('td', { class: 'num' }, int(n)))),
        Object.entries(warnings).map(([c, n]) => h('tr', {}, h('td', {}, h('code', {}, c)), h('td', {}, 'warning'), h('td', { class: 'num' }, int(n)))))));
    const report = h('div', { id: 'report' }, loading('the report'));
    parts.push(h('h2', {}, 'Every problem, by line'), report);
    api.get(`/v1/datasets/${encodeURIComponent(d.id)}/report`, { signal: ctx.signal }).then((r) => {
      const issues = r.issues || [];
      replace(report, issues.length === 0 ? empty('The report lists no line.') : h('table', { class: 'list report' },
        h('caption', { class: 'sr-only' }, 'Validation report'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'num' }, 'Line'), h('th', { scope: 'col' }, 'Code'), h('th', { scope: 'col' }, 'Severity'), h('th', { scope: 'col' }, 'What is wrong'))),
        h('tbody', {}, issues.map((i) => h('tr', {},
          h('td', { class: 'num' }, i.line ? int(i.line) : 'file'), h('td', {}, h('code', {}, i.code)), h('td', {}, i.severity), h('td', {}, i.message))))),
      (r.truncated && (r.truncated.errors || r.truncated.warnings)) ? h('p', { class: 'help' }, 'The report stops after its first problems of a kind; the counts above are complete.') : null);
    }).catch((err) => { if (err.name !== 'AbortError') replace(report, failure(err, null, 'Reload the page to try again.')); });
  }
  const delErr = h('div', { 'aria-live': 'polite' });
  const delBtn = h('button', {
    type: 'button', class: 'danger', onclick: async () => {
      const ok = await confirm({ title: `Delete ${d.name}?`, body: h('p', {}, 'The file and its validation report are removed. Jobs already trained keep their adapters.'), confirmLabel: 'Delete the dataset', danger: true });
      if (!ok) { delBtn.focus(); return; }
      try {
        await api.del(`/v1/datasets/${encodeURIComponent(d.id)}`);
        announce(`${d.name} deleted.`);
        location.hash = '#/datasets';
      } catch (err) {
        replace(delErr, h('div', { class: 'state error', role: 'alert' },
          h('p', {}, h('strong', {}, 'Not deleted: '), err.message),
          err.status === 409 ? h('p', {}, 'Wait for the jobs that use it to end, or cancel them, then try again.') : null));
        delBtn.focus();
      }
    },
  }, 'Delete this dataset…');
  parts.push(h('h2', {}, 'Delete'), delBtn, delErr);
  return h('div', {}, parts);
}

function fact(k, v) {
  return h('div', {}, h('dt', {}, k), h('dd', {}, v));
}
