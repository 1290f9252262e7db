// The HTTP API, as the console calls it: JSON in and out, a bearer token,
// and the API's error shape ({"error": {code, message, details}}) turned
// into an ApiError that pages show next to what failed.

let config = { api_base: '', auth: 'token' };
let token = null;
let onUnauthorized = () => {};

// The local stack's dev token lives for the tab's session only
// (sessionStorage, never localStorage); a Cognito token lives in memory.
const tokenKey = 'brightrun.token';

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export async function loadConfig() {
  const res = await fetch('/config.json', { cache: 'no-cache' });
  if (!res.ok) throw new Error(`the console's settings did not load (HTTP ${res.status})`);
  config = await res.json();
  if (config.auth === 'token') token = sessionStorage.getItem(tokenKey);
  return config;
}

export function getConfig() { return config; }

export function signedIn() { return !!token; }

export function setToken(t, { persist = config.auth === 'token' } = {}) {
  token = t;
  if (persist) sessionStorage.setItem(tokenKey, t);
}

export function signOut() {
  token = null;
  sessionStorage.removeItem(tokenKey);
}

export function whenUnauthorized(fn) { onUnauthorized = fn; }

// request calls the API; path starts with /v1/. It throws ApiError for an
// HTTP error and a plain Error (with a hint) when the API cannot be reached.
export async function request(method, path, { body, headers = {}, signal, signingIn = false } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(config.api_base + path, {
      method, headers: h, signal,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new Error('The API could not be reached: check your connection (or that the local stack is running) and try again.');
  }
  if (res.status === 204) return null;
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    if (res.status === 401 && !signingIn) onUnauthorized();
    throw new ApiError(res.status, e.code || `http_${res.status}`, e.message || `HTTP ${res.status}`, e.details);
  }
  return data;
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, body, opts = {}) => request('POST', path, { ...opts, body });
export const del = (path, opts) => request('DELETE', path, opts);

// all follows next_cursor until the last page and concatenates key's items.
export async function all(path, key, { signal, limit = 100 } = {}) {
  const items = [];
  let cursor = '';
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(`${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { signal });
    items.push(...(page[key] || []));
    if (!page.next_cursor) return items;
    cursor = page.next_cursor;
  }
}
