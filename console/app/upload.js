// Uploading a dataset as cmd/brightrun/upload.go does: a quick check of the
// first lines in the browser, POST /v1/datasets for the plan, then the file
// straight to the presigned URL — one PUT, or the parts of a multipart
// upload a few at a time, each part's ETag kept so that a reload resumes
// where it stopped (the user picks the same file again) — and finally the
// completion of a multipart upload.
import { get, post, ApiError } from './api.js';

const checkLines = 50;
const checkBytes = 256 * 1024;
const roles = new Set(['system', 'user', 'assistant']);
const parallelParts = 4;

// The formats the API takes, with what a line of each holds.
export const formats = {
  messages: { label: 'Chat messages', shape: '{"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}' },
  sharegpt: { label: 'ShareGPT', shape: '{"conversations": [{"from": "human", "value": "…"}, {"from": "gpt", "value": "…"}]}' },
  alpaca: { label: 'Alpaca', shape: '{"instruction": "…", "input": "…", "output": "…"}' },
};
const sharegptFrom = new Set(['system', 'human', 'user', 'gpt', 'assistant']);

// lineProblem says what is wrong with a parsed line in format, or ''.
function lineProblem(v, format) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return `This line is not a JSON object: it must look like ${formats[format].shape}.`;
  const other = Object.keys(formats).find((f) => f !== format && (f === 'messages' ? Array.isArray(v.messages) : f === 'sharegpt' ? Array.isArray(v.conversations) : typeof v.instruction === 'string'));
  const hint = other ? ` It looks like ${formats[other].label}: choose that format.` : '';
  if (format === 'alpaca') {
    if (typeof v.instruction !== 'string' || typeof v.output !== 'string') return `This line needs an "instruction" and an "output" text.${hint}`;
    return '';
  }
  const key = format === 'messages' ? 'messages' : 'conversations';
  const list = v[key];
  if (!Array.isArray(list)) return `This line has no "${key}" list.${hint}`;
  if (list.length === 0) return `The "${key}" list is empty.`;
  const bad = list.findIndex((m) => (format === 'messages'
    ? !m || typeof m !== 'object' || !roles.has(m.role) || typeof m.content !== 'string'
    : !m || typeof m !== 'object' || !sharegptFrom.has(m.from) || typeof m.value !== 'string'));
  if (bad < 0) return '';
  return format === 'messages'
    ? `Message ${bad + 1} needs a role (system, user or assistant) and a text content.`
    : `Turn ${bad + 1} needs a "from" (human, gpt or system) and a text "value".`;
}

// check reads the start of the file and reports the most common mistakes:
// lines that are not JSON, and lines that are not of the chosen format. The
// server validates every line after upload.
export async function check(file, format = 'messages') {
  const problems = [];
  if (!/\.jsonl$/i.test(file.name)) problems.push({ line: 0, message: `${file.name} does not end in .jsonl: the file must be JSON Lines, one conversation per line.` });
  if (file.size === 0) return { lines: 0, problems: [{ line: 0, message: 'The file is empty.' }] };
  const text = await file.slice(0, checkBytes).text();
  let lines = text.split('\n');
  if (file.size > checkBytes) lines = lines.slice(0, -1); // the last may be cut
  lines = lines.slice(0, checkLines);
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let v;
    try {
      v = JSON.parse(raw);
    } catch {
      problems.push({ line, message: 'This line is not JSON: each line must be one complete JSON object.' });
      return;
    }
    const message = lineProblem(v, format);
    if (message) problems.push({ line, message });
  });
  return { lines: lines.length, problems };
}

function resumeKey(file, format) {
  return `brightrun.upload.${format}.${file.name}.${file.size}.${file.lastModified}`;
}

// upload sends the file; onProgress(sent, total) follows the bytes. It
// resolves to the dataset id.
export async function upload(file, { format = 'messages', onProgress = () => {}, onPlan = () => {} } = {}) {
  const key = resumeKey(file, format);
  const saved = await resumable(key);
  let state = saved;
  if (!state) {
    const created = await post('/v1/datasets', { name: file.name, size_bytes: file.size, format });
    state = { dataset_id: created.dataset.id, upload: created.upload, etags: {} };
  }
  onPlan(state.upload, !!saved);
  if (state.upload.type === 'single') {
    await put(state.upload.request, file, (n) => onProgress(n, file.size));
    onProgress(file.size, file.size);
    return state.dataset_id;
  }
  const save = () => localStorage.setItem(key, JSON.stringify(state));
  save();
  const sent = {};
  const report = () => onProgress(Object.values(sent).reduce((a, b) => a + b, 0), file.size);
  const pending = [];
  let offset = 0;
  for (const p of state.upload.parts) {
    if (state.etags[p.part_number]) sent[p.part_number] = p.size_bytes;
    else pending.push({ part: p, offset });
    offset += p.size_bytes;
  }
  report();
  let failed = null;
  const worker = async () => {
    while (pending.length && !failed) {
      const { part, offset: at } = pending.shift();
      try {
        const etag = await put(part, file.slice(at, at + part.size_bytes), (n) => { sent[part.part_number] = n; report(); });
        if (!etag) throw new Error(`part ${part.part_number} was stored but its ETag is not readable: the bucket's CORS must expose ETag`);
        state.etags[part.part_number] = etag;
        sent[part.part_number] = part.size_bytes;
        save();
        report();
      } catch (err) {
        failed = err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallelParts, pending.length) }, worker));
  if (failed) throw failed;
  const parts = Object.entries(state.etags).map(([n, etag]) => ({ part_number: Number(n), etag }));
  parts.sort((a, b) => a.part_number - b.part_number);
  await post(state.upload.complete_path, { parts });
  localStorage.removeItem(key);
  return state.dataset_id;
}

// resumable returns the saved state of an unfinished multipart upload of
// this very file, if its URLs are still valid and the dataset still waits.
async function resumable(key) {
  let state;
  try {
    state = JSON.parse(localStorage.getItem(key) || 'null');
  } catch {
    state = null;
  }
  if (!state) return null;
  const soon = Date.now() + 60_000;
  const expired = state.upload.parts.some((p) => !state.etags[p.part_number] && Date.parse(p.expires_at) < soon);
  try {
    const d = await get(`/v1/datasets/${encodeURIComponent(state.dataset_id)}`);
    if (!expired && d.status === 'awaiting_upload') return state;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
  }
  localStorage.removeItem(key);
  return null;
}

// put sends body to a presigned request with XMLHttpRequest (fetch reports
// no upload progress) and resolves to the response's ETag.
function put(req, body, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(req.method || 'PUT', req.url);
    for (const [k, v] of Object.entries(req.headers || {})) {
      // The browser sets these itself and refuses to be told.
      if (!['content-length', 'host'].includes(k.toLowerCase())) xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => progress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.getResponseHeader('ETag'));
      else reject(new Error(`the blob store refused the upload (HTTP ${xhr.status}): pick the file again to retry`));
    };
    xhr.onerror = () => reject(new Error('the upload was interrupted: pick the file again to resume'));
    xhr.send(body);
  });
}
