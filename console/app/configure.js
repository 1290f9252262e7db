// Configure a job: a ready dataset, a model, a preset, each hyperparameter
// with its preset value and bounds, the estimate for every GPU (updated
// 300 ms after the last change), a budget, and a confirmation of the most
// the job can spend. The Idempotency-Key belongs to the form's state: the
// same request sent twice (a double click, a retry) makes one job.
import * as api from './api.js';
import { h, replace, loading, empty, failure, confirm, announce, usd, seconds } from './ui.js';

const labels = {
  learning_rate: ['Learning rate', 'How big each update is. Too high and the loss jumps or becomes NaN.'],
  batch_size: ['Batch size', 'Examples per step on the GPU. Lower it if the GPU runs out of memory.'],
  gradient_accumulation: ['Gradient accumulation', 'Steps added up before each update: batch size × this = examples per update.'],
  epochs: ['Epochs', 'Passes over the dataset.'],
  lora_rank: ['LoRA rank', 'The adapter’s capacity. Higher learns more and costs more memory.'],
  lora_alpha: ['LoRA alpha', 'The adapter’s scale; usually twice the rank.'],
  lora_dropout: ['LoRA dropout', 'Share of the adapter dropped at random while training, against overfitting.'],
  max_seq_length: ['Maximum sequence length', 'Tokens per example; longer examples are cut.'],
  warmup_ratio: ['Warm-up share', 'Share of the steps over which the learning rate ramps up.'],
};
const integers = new Set(['batch_size', 'gradient_accumulation', 'epochs', 'lora_rank', 'lora_alpha', 'max_seq_length']);
const debounceMs = 300;

export async function configurePage(main, ctx, query) {
  document.title = 'New job · Bright Run';
  main.append(h('h1', {}, 'Train a model'));
  const body = h('div', {}, loading('datasets, models and presets'));
  main.append(body);
  let datasets, models, presets;
  try {
    [datasets, models, presets] = await Promise.all([
      api.all('/v1/datasets', 'datasets', { signal: ctx.signal }),
      api.get('/v1/models', { signal: ctx.signal }),
      api.get('/v1/presets', { signal: ctx.signal }),
    ]);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    replace(body, failure(err, () => { main.replaceChildren(); configurePage(main, ctx, query); }));
    return;
  }
  const ready = datasets.filter((d) => d.status === 'ready');
  if (ready.length === 0) {
    replace(body, empty('No dataset is ready to train on yet. Upload one and wait for its validation to pass.', h('a', { class: 'button primary', href: '#/datasets' }, 'Go to datasets')));
    return;
  }
  replace(body, form(ctx, ready, models, presets, new URLSearchParams(query || '').get('dataset')));
}

function form(ctx, datasets, models, presets, wanted) {
  const bounds = Object.fromEntries(presets.bounds.map((b) => [b.field, b]));
  const byName = Object.fromEntries(presets.presets.map((p) => [p.name, p]));
  let preset = byName[presets.default] ? presets.default : presets.presets[0].name;
  // One Idempotency-Key per distinct job request: the same request sent
  // twice (a double click, a retry after an error) makes one job.
  const keys = new Map();
  let lastEstimated = '';
  let estimate = null; // the last comparison shown
  let chosenGPU = null;
  let timer = null;
  let inflight = null;
  let version = 0;

  const datasetSel = h('select', { id: 'f-dataset', name: 'dataset' },
    datasets.map((d) => h('option', { value: d.id, selected: d.id === wanted }, `${d.name} — ${d.validation ? d.validation.examples : '?'} examples`)));
  const modelSel = h('select', { id: 'f-model', name: 'model' },
    models.models.map((m) => h('option', { value: m.id, selected: m.id === models.default }, m.name)));
  const presetRadios = h('fieldset', { class: 'presets' }, h('legend', {}, 'Preset'),
    presets.presets.map((p) => {
      const id = `f-preset-${p.name}`;
      return h('div', { class: 'radio' },
        h('input', { type: 'radio', name: 'preset', id, value: p.name, checked: p.name === preset, 'aria-describedby': `${id}-d` }),
        h('label', { for: id }, p.name),
        h('span', { id: `${id}-d`, class: 'help' }, p.description));
    }));

  const fields = {};
  const hpSet = h('fieldset', { class: 'hyper' }, h('legend', {}, 'Hyperparameters'),
    h('p', { class: 'help' }, 'Each starts at the preset’s value; change one to override it.'),
    Object.keys(labels).filter((f) => bounds[f]).map((f) => {
      const b = bounds[f];
      const [label, help] = labels[f];
      const id = `f-${f}`;
      const input = h('input', {
        id, name: f, type: 'number', inputmode: 'decimal', step: integers.has(f) ? 1 : 'any', min: b.min, max: b.max,
        'aria-describedby': `${id}-help ${id}-err`,
      });
      const presetNote = h('span', { class: 'preset-value' });
      const err = h('p', { id: `${id}-err`, class: 'field-error' });
      fields[f] = { input, presetNote, err, bound: b };
      return h('div', { class: 'field' },
        h('label', { for: id }, label),
        input,
        h('p', { id: `${id}-help`, class: 'help' }, presetNote, ` · allowed ${b.min} to ${b.max}. ${help}`),
        err);
    }));

  const nameInput = h('input', { id: 'f-name', name: 'name', type: 'text', maxlength: 200, autocomplete: 'off' });
  const splitInput = h('input', { id: 'f-split', name: 'validation_split', type: 'number', min: 0, max: 0.5, step: 0.01, inputmode: 'decimal', 'aria-describedby': 'f-split-help f-split-err' });
  const splitErr = h('p', { id: 'f-split-err', class: 'field-error' });
  const budgetInput = h('input', { id: 'f-budget', name: 'budget', type: 'number', min: 0.01, step: 0.01, inputmode: 'decimal', 'aria-describedby': 'f-budget-help f-budget-err' });
  const budgetErr = h('p', { id: 'f-budget-err', class: 'field-error' });

  const estState = h('p', { id: 'estimate-state', class: 'help', role: 'status' }, 'Estimating…');
  const estBody = h('div', { id: 'estimate-body' }, loading('the estimate'));
  const estimateBox = h('section', { id: 'estimate', 'aria-labelledby': 'estimate-h', 'data-version': '0', 'data-state': 'updating' },
    h('h2', { id: 'estimate-h' }, 'Estimate for every GPU'), estState, estBody);

  const createErr = h('div', { 'aria-live': 'polite' });
  const createBtn = h('button', { type: 'submit', class: 'primary', id: 'create-job' }, 'Start training…');

  const applyPreset = () => {
    const p = byName[preset];
    for (const [f, x] of Object.entries(fields)) {
      x.input.value = p.hyperparameters[f];
      x.presetNote.textContent = `Preset ${preset}: ${p.hyperparameters[f]}`;
    }
  };
  applyPreset();

  // overrides returns the fields that differ from the preset and the
  // fields out of bounds (explained next to them).
  const readFields = () => {
    const p = byName[preset].hyperparameters;
    const overrides = {};
    let bad = 0;
    for (const [f, x] of Object.entries(fields)) {
      const raw = x.input.value.trim();
      let msg = '';
      const v = Number(raw);
      if (raw === '') msg = `Enter a value (the preset’s is ${p[f]}).`;
      else if (!Number.isFinite(v)) msg = 'Enter a number.';
      else if (integers.has(f) && !Number.isInteger(v)) msg = 'Enter a whole number.';
      else if (v < x.bound.min || v > x.bound.max) msg = `${v} is out of bounds: ${labels[f][0].toLowerCase()} must be between ${x.bound.min} and ${x.bound.max}.`;
      setFieldError(x, msg);
      if (msg) bad++;
      else if (v !== p[f]) overrides[f] = v;
    }
    return { overrides, bad };
  };
  const readBudget = () => {
    const raw = budgetInput.value.trim();
    if (raw === '') { setFieldError({ input: budgetInput, err: budgetErr }, ''); return { budget: null, bad: 0 }; }
    const v = Number(raw);
    const msg = Number.isFinite(v) && v > 0 ? '' : 'Enter an amount in US dollars above 0, or leave it empty for no budget.';
    setFieldError({ input: budgetInput, err: budgetErr }, msg);
    return { budget: msg ? null : v, bad: msg ? 1 : 0 };
  };

  const readSplit = () => {
    const raw = splitInput.value.trim();
    const v = Number(raw);
    const msg = raw === '' || (Number.isFinite(v) && v >= 0 && v <= 0.5) ? '' : `${raw} is out of bounds: the share held out must be between 0 and 0.5.`;
    setFieldError({ input: splitInput, err: splitErr }, msg);
    return { split: raw === '' || msg ? null : v, bad: msg ? 1 : 0 };
  };

  const requestBody = () => {
    const { overrides, bad } = readFields();
    const b = readBudget();
    const sp = readSplit();
    const body = { dataset_id: datasetSel.value, base_model: modelSel.value, preset };
    if (Object.keys(overrides).length) body.hyperparameters = overrides;
    if (sp.split !== null) body.validation_split = sp.split;
    return { body, bad: bad + b.bad + sp.bad, budget: b.budget };
  };

  const changed = (e) => {
    // The name and the budget change the job, not its estimate.
    if (e && (e.target === nameInput || e.target === budgetInput)) {
      if (e.target === budgetInput) readBudget();
      return;
    }
    const { body, bad } = requestBody();
    if (!bad && JSON.stringify(body) === lastEstimated && estimateBox.dataset.state === 'current') return; // a blur, not a change
    estimateBox.dataset.state = 'updating';
    estState.textContent = 'Updating the estimate…';
    clearTimeout(timer);
    timer = setTimeout(refreshEstimate, debounceMs);
  };

  const refreshEstimate = async () => {
    clearTimeout(timer);
    const { body, bad } = requestBody();
    if (inflight) inflight.abort();
    if (bad) {
      estimateBox.dataset.state = 'invalid';
      estState.textContent = 'Fix the highlighted fields to see the estimate.';
      return;
    }
    inflight = new AbortController();
    const mine = inflight;
    ctx.signal.addEventListener('abort', () => mine.abort());
    try {
      const res = await api.post('/v1/estimates', body, { signal: mine.signal });
      estimate = res.comparison;
      lastEstimated = JSON.stringify(body);
      version++;
      replace(estBody, estimateTable(estimate));
      estimateBox.dataset.version = String(version);
      estimateBox.dataset.state = 'current';
      estState.textContent = `Updated for preset ${preset}${body.hyperparameters ? ` with ${Object.keys(body.hyperparameters).length} override(s)` : ''}.`;
    } catch (err) {
      if (err.name === 'AbortError') return;
      estimateBox.dataset.state = 'error';
      if (err instanceof api.ApiError && Array.isArray(err.details)) {
        for (const d of err.details) if (fields[d.field]) setFieldError(fields[d.field], `${d.value} is out of bounds: must be between ${d.min} and ${d.max}.`);
      }
      estState.textContent = `No estimate: ${err.message}`;
    }
  };

  const estimateTable = (c) => {
    const fits = c.estimates || [];
    if (!fits.some((e) => e.gpu === chosenGPU)) chosenGPU = c.cheapest_gpu || (fits[0] && fits[0].gpu);
    if (fits.length === 0) {
      return h('div', {}, empty('No GPU can train this configuration: lower the maximum sequence length, the batch size or the LoRA rank.'), notFit(c));
    }
    return h('div', {},
      h('table', { class: 'list estimates' },
        h('caption', {}, `Duration and cost ranges per GPU (prices of ${c.prices_date}); choose the GPU to train on`),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'GPU'), h('th', { scope: 'col' }, 'Duration'), h('th', { scope: 'col' }, 'Cost'),
          h('th', { scope: 'col', class: 'num' }, 'Steps'), h('th', { scope: 'col' }, 'Memory'))),
        h('tbody', {}, fits.map((e) => {
          const id = `gpu-${e.gpu}`;
          const marks = [e.gpu === c.cheapest_gpu ? h('span', { class: 'mark cheapest' }, 'cheapest') : null,
            e.gpu === c.fastest_gpu ? h('span', { class: 'mark fastest' }, 'fastest') : null];
          return h('tr', { 'data-gpu': e.gpu },
            h('td', {}, h('input', {
              type: 'radio', name: 'gpu', id, value: e.gpu, checked: e.gpu === chosenGPU,
              onchange: () => { chosenGPU = e.gpu; },
            }), ' ', h('label', { for: id }, e.gpu_name), ' ', marks),
            h('td', {}, `${seconds(e.duration_seconds.low)} – ${seconds(e.duration_seconds.high)}`, h('br'), h('span', { class: 'help' }, `expected ${seconds(e.duration_seconds.expected)}`)),
            h('td', { class: 'cost' }, `${usd(e.cost_usd.low)} – ${usd(e.cost_usd.high)}`, h('br'), h('span', { class: 'help' }, `expected ${usd(e.cost_usd.expected)}`)),
            h('td', { class: 'num' }, e.steps.total.toLocaleString('en-US')),
            h('td', {}, `${e.memory.required_gib} of ${e.memory.available_gib} GiB`));
        }))),
      evaluation(fits.find((e) => e.gpu === chosenGPU)),
      notFit(c));
  };

  const evaluation = (e) => {
    const ev = e && e.evaluation;
    if (!ev || !ev.examples) return h('p', { id: 'evaluation', class: 'help' }, 'Evaluation: none (nothing held out).');
    return h('p', { id: 'evaluation', class: 'help' },
      `Evaluation: ${ev.examples} example${ev.examples === 1 ? '' : 's'} held out (${ev.training_examples} train), evaluated ${ev.evaluations} time${ev.evaluations === 1 ? '' : 's'}, about ${seconds(ev.seconds)} in all.`);
  };

  const notFit = (c) => {
    const nf = c.does_not_fit || [];
    if (nf.length === 0) return null;
    return h('div', { class: 'not-fit' }, h('h3', {}, 'GPUs that cannot train it'),
      h('ul', {}, nf.map((n) => h('li', {}, `${n.gpu_name}: needs about ${n.required_gib} GiB, has ${n.available_gib} GiB.`))));
  };

  const submit = async (e) => {
    e.preventDefault();
    replace(createErr);
    const { body, bad, budget } = requestBody();
    if (bad) {
      const first = Object.values(fields).find((x) => x.input.getAttribute('aria-invalid') === 'true');
      (first ? first.input : budgetInput).focus();
      return;
    }
    if (estimateBox.dataset.state === 'updating') await refreshEstimate(); // a change still in its debounce
    const est = estimate && (estimate.estimates || []).find((x) => x.gpu === chosenGPU);
    if (!est || estimateBox.dataset.state !== 'current') {
      replace(createErr, h('p', { class: 'field-error', role: 'alert' }, 'There is no estimate for this configuration yet: see the estimate’s message above, then try again.'));
      return;
    }
    const timeoutCost = est.execution_timeout_seconds * est.price_usd_per_second;
    const most = budget !== null
      ? h('p', {}, h('strong', {}, `At most ${usd(budget)}`), ': the job is stopped when its cost reaches your budget.')
      : h('p', {}, h('strong', {}, `At most ${usd(timeoutCost)} per run`), ` without a budget: RunPod stops a run at its execution timeout (${seconds(est.execution_timeout_seconds)} at ${usd(est.price_usd_per_second * 3600)} an hour). Set a budget to cap it lower.`);
    const ok = await confirm({
      title: 'Start training?',
      body: h('div', {},
        h('p', {}, `${datasetSel.selectedOptions[0].textContent}, preset ${preset}${body.hyperparameters ? ` with ${Object.keys(body.hyperparameters).join(', ')} changed` : ''}, on ${est.gpu_name}.`),
        h('p', {}, `Expected ${usd(est.cost_usd.expected)} (${usd(est.cost_usd.low)}–${usd(est.cost_usd.high)}), ${seconds(est.duration_seconds.expected)}.`),
        most),
      confirmLabel: 'Start training',
    });
    if (!ok) { createBtn.focus(); return; }
    const jobBody = { ...body, gpu_type: chosenGPU };
    if (nameInput.value.trim()) jobBody.name = nameInput.value.trim();
    if (budget !== null) jobBody.budget_usd = budget;
    const sig = JSON.stringify(jobBody);
    if (!keys.has(sig)) keys.set(sig, crypto.randomUUID());
    createBtn.disabled = true;
    try {
      const job = await api.post('/v1/jobs', jobBody, { headers: { 'Idempotency-Key': keys.get(sig) } });
      announce('Job created.');
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      createBtn.disabled = false;
      replace(createErr, h('div', { class: 'state error', role: 'alert' }, h('p', {}, h('strong', {}, 'The job was not created: '), err.message),
        h('p', {}, 'Press Start training again: the same request never makes a second job.')));
    }
  };

  const formEl = h('form', { class: 'configure', novalidate: true, onsubmit: submit, oninput: (e) => { if (e.target.name !== 'gpu') changed(e); }, onchange: (e) => {
    if (e.target.name === 'preset') { preset = e.target.value; applyPreset(); }
    if (e.target.name !== 'gpu') changed(e);
  } },
  h('div', { class: 'field' }, h('label', { for: 'f-dataset' }, 'Dataset'), datasetSel),
  h('div', { class: 'field' }, h('label', { for: 'f-model' }, 'Base model'), modelSel),
  presetRadios,
  hpSet,
  h('fieldset', {}, h('legend', {}, 'Evaluation'),
    h('div', { class: 'field' }, h('label', { for: 'f-split' }, 'Share held out for evaluation (optional)'), splitInput,
      h('p', { id: 'f-split-help', class: 'help' }, 'From 0 to 0.5: that share of the examples is not trained on and measures the evaluation loss. Empty: the default for this dataset’s size (0 evaluates nothing).'), splitErr)),
  h('fieldset', {}, h('legend', {}, 'Job'),
    h('div', { class: 'field' }, h('label', { for: 'f-name' }, 'Name (optional)'), nameInput),
    h('div', { class: 'field' }, h('label', { for: 'f-budget' }, 'Budget in US dollars (optional)'), budgetInput,
      h('p', { id: 'f-budget-help', class: 'help' }, 'The job is stopped when its cost reaches it.'), budgetErr)),
  estimateBox,
  createBtn,
  createErr);
  refreshEstimate();
  return formEl;
}

function setFieldError(x, msg) {
  x.err.textContent = msg;
  if (msg) x.input.setAttribute('aria-invalid', 'true');
  else x.input.removeAttribute('aria-invalid');
}

