// Sign-in through Cognito's hosted UI: the authorization code flow with
// PKCE for a public client (no secret in the page). The tokens stay in this
// module's memory: never in localStorage or sessionStorage. A reload signs
// in again through the hosted UI, whose own session cookie makes it a
// redirect without a form. Only the PKCE verifier and the state (one-time,
// useless without the code) wait in sessionStorage during the redirect.
import { setToken } from './api.js';

const pkceKey = 'brightrun.pkce';

function base64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

export async function signIn(c) {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(pkceKey, JSON.stringify({ verifier, state, hash: location.hash }));
  const q = new URLSearchParams({
    response_type: 'code', client_id: c.client_id, redirect_uri: c.redirect_uri,
    scope: 'openid email', state, code_challenge: challenge, code_challenge_method: 'S256',
  });
  location.assign(`${c.domain}/oauth2/authorize?${q}`);
}

// finishSignIn exchanges the code the hosted UI sent back, if any.
export async function finishSignIn(c) {
  const q = new URLSearchParams(location.search);
  const code = q.get('code');
  if (!code) return;
  const saved = JSON.parse(sessionStorage.getItem(pkceKey) || 'null');
  sessionStorage.removeItem(pkceKey);
  history.replaceState(null, '', location.pathname + ((saved && saved.hash) || ''));
  if (!saved || saved.state !== q.get('state')) throw new Error('the sign-in answer does not match the request made from this tab: sign in again');
  const res = await fetch(`${c.domain}/oauth2/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', client_id: c.client_id, code, redirect_uri: c.redirect_uri, code_verifier: saved.verifier }),
  });
  if (!res.ok) throw new Error(`the sign-in could not be completed (HTTP ${res.status}): sign in again`);
  const tokens = await res.json();
  setToken(tokens.id_token, { persist: false });
}

export function signOut(c) {
  const q = new URLSearchParams({ client_id: c.client_id, logout_uri: c.redirect_uri });
  location.assign(`${c.domain}/logout?${q}`);
}
