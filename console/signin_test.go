package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/brightrun/brightrun/console"
	"github.com/brightrun/brightrun/shared/localstack"
)

// fakeHostedUI plays Cognito's hosted UI for one public client: the
// authorize endpoint redirects back with a code at once (the user signed
// in), and the token endpoint hands out idToken only for that code, the
// registered redirect URI and the verifier whose S256 challenge came with it.
type fakeHostedUI struct {
	t                     *testing.T
	clientID, redirectURI string
	idToken               string

	mu               sync.Mutex
	challenge, state string
	exchanged        int
}

func (f *fakeHostedUI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/oauth2/authorize":
		q := r.URL.Query()
		if q.Get("response_type") != "code" || q.Get("client_id") != f.clientID || q.Get("redirect_uri") != f.redirectURI ||
			q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" {
			f.t.Errorf("authorize request %s: want the code flow with PKCE (S256) for %s back to %s", r.URL.RawQuery, f.clientID, f.redirectURI)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		f.challenge, f.state = q.Get("code_challenge"), q.Get("state")
		http.Redirect(w, r, f.redirectURI+"?"+url.Values{"code": {"the-code"}, "state": {f.state}}.Encode(), http.StatusFound)
	case "/oauth2/token":
		// Cognito's token endpoint answers browsers' CORS requests.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("code") != "the-code" ||
			r.PostForm.Get("client_id") != f.clientID || r.PostForm.Get("redirect_uri") != f.redirectURI ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != f.challenge {
			f.t.Errorf("token request %v: want the code, the client, the redirect URI and the verifier of the challenge", r.PostForm)
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		f.exchanged++
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id_token": f.idToken, "access_token": "unused", "token_type": "Bearer", "expires_in": 3600})
	default:
		http.NotFound(w, r)
	}
}

// Signing in through the hosted UI: the code flow with PKCE, the tokens in
// the page's memory only (not in localStorage or sessionStorage), the code
// gone from the address bar; a reload signs in again through the hosted UI.
func TestSigningInThroughTheHostedUIKeepsTheTokensInMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser test")
	}
	exe := chrome(t)
	axe, err := os.ReadFile(filepath.Join("..", "tools", "console", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		missing(t, "axe-core (tools/console/node_modules)")
	}
	// The token the fake hosted UI hands out is one the local API accepts.
	const token = "hosted-ui-token"
	stack, err := localstack.Open(localstack.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "alice:" + token,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := stack.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close(context.Background()) })

	idp := &fakeHostedUI{t: t, clientID: "console-client", idToken: token}
	idpSrv := httptest.NewServer(idp)
	t.Cleanup(idpSrv.Close)

	// The console in Cognito mode on an origin of its own, in front of the
	// local API (same origin, as with a custom domain).
	var web http.Handler
	mux := http.NewServeMux()
	for _, p := range console.Paths {
		mux.Handle(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { web.ServeHTTP(w, r) }))
	}
	mux.Handle("/", stack.Handler())
	site := httptest.NewServer(mux)
	t.Cleanup(site.Close)
	idp.redirectURI = site.URL + "/"
	web = console.Handler(console.Config{Auth: console.AuthCognito, Cognito: &console.Cognito{Domain: idpSrv.URL, ClientID: idp.clientID, RedirectURI: idp.redirectURI}})

	shots := os.Getenv("BRIGHTRUN_SCREENSHOTS")
	if shots == "" {
		shots = "screenshots"
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	j := startBrowser(t, exe, string(axe), site.URL, shots, t.TempDir())
	j.run(chromedp.Navigate(site.URL + "/#/jobs"))
	j.waitFor(`document.querySelector('main button.primary')?.textContent === 'Continue to sign-in'`, "the hosted UI sign-in page")
	j.shotN = 90 // after the journey's screenshots
	j.page("signin-hosted-ui")
	j.run(chromedp.Click(`main button.primary`, chromedp.ByQuery))
	j.waitFor(`document.querySelector('main h1')?.textContent === 'Jobs' && !!document.querySelector('#job-list .state.empty')`, "the jobs page (where the user was going), signed in")
	if loc := j.text(`location.href`); strings.Contains(loc, "code=") || !strings.HasSuffix(loc, "#/jobs") {
		t.Errorf("after sign-in the address is %s, want the console's without the code, at #/jobs", loc)
	}
	if stored := j.text(`JSON.stringify(localStorage) + JSON.stringify(sessionStorage)`); strings.Contains(stored, token) || strings.Contains(stored, "unused") {
		t.Errorf("a token is in the browser's storage: %s", stored)
	}
	// A reload forgets the token and goes through the hosted UI again.
	j.run(chromedp.Reload())
	j.waitFor(`document.querySelector('main button.primary')?.textContent === 'Continue to sign-in'`, "the sign-in page after a reload")
	j.run(chromedp.Click(`main button.primary`, chromedp.ByQuery))
	j.waitFor(`document.querySelector('main h1')?.textContent === 'Jobs'`, "signed in again")
	idp.mu.Lock()
	if idp.exchanged != 2 {
		t.Errorf("the token endpoint exchanged %d codes, want 2 (one per sign-in)", idp.exchanged)
	}
	idp.mu.Unlock()
	j.mu.Lock()
	for _, p := range j.problems {
		t.Errorf("the page reported: %s", p)
	}
	j.mu.Unlock()
}
