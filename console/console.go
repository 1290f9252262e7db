// Package console serves the web console: plain ES modules and CSS, with
// uPlot (vendored, unchanged, see vendor/uplot/README.md) for the loss curve.
// There is no build step: the files in this folder are embedded as they are,
// so `make run` serves the console with Go alone.
//
// The console is a client of the HTTP API and of nothing else: it signs in
// with a bearer token (the local stack's dev token) or through Cognito's
// hosted UI, and calls the API at Config.APIBase. Every asset comes from
// here; the Content-Security-Policy lets the page load nothing else.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// Files are the console's assets: index.html and everything it loads.
//
//go:embed index.html style.css app vendor
var Files embed.FS

// Config is what the page reads from /config.json before anything else.
type Config struct {
	// APIBase is the API's base URL; "" is the console's own origin.
	APIBase string `json:"api_base"`
	// Auth is AuthToken (a bearer token typed in) or AuthCognito.
	Auth string `json:"auth"`
	// Cognito is the hosted UI's settings when Auth is AuthCognito.
	Cognito *Cognito `json:"cognito,omitempty"`
}

// Cognito names the user pool client the console signs in with
// (authorization code with PKCE, a public client without a secret).
type Cognito struct {
	// Domain is the hosted UI's base URL (https://<prefix>.auth.<region>.amazoncognito.com).
	Domain   string `json:"domain"`
	ClientID string `json:"client_id"`
	// RedirectURI is the console's own URL, registered as a callback URL.
	RedirectURI string `json:"redirect_uri"`
}

// Sign-in methods.
const (
	AuthToken   = "token"
	AuthCognito = "cognito"
)

// File is one thing the console serves: at Path on the local stack (and
// on any Go server), as Key in the bucket CloudFront serves on AWS.
type File struct {
	Path        string // URL path: "/", "/config.json", "/assets/app/main.js"
	Key         string // object key: "index.html", "config.json", "assets/app/main.js"
	ContentType string
	Body        []byte
}

// Site lists the console's files with cfg as its config.json: what Handler
// serves and what tools/consolepublish uploads.
func Site(cfg Config) []File {
	if cfg.Auth == "" {
		cfg.Auth = AuthToken
	}
	configJSON, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // a struct of strings always marshals
	}
	files := []File{
		{Path: "/", Key: "index.html", ContentType: "text/html; charset=utf-8", Body: mustRead("index.html")},
		{Path: "/config.json", Key: "config.json", ContentType: "application/json", Body: configJSON},
	}
	_ = fs.WalkDir(Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "index.html" {
			return err
		}
		typ := mime.TypeByExtension(path.Ext(p))
		if strings.HasSuffix(p, ".js") {
			typ = "text/javascript; charset=utf-8"
		}
		if typ == "" {
			typ = "text/plain; charset=utf-8"
		}
		files = append(files, File{Path: "/assets/" + p, Key: "assets/" + p, ContentType: typ, Body: mustRead(p)})
		return nil
	})
	return files
}

// Handler serves the console: GET / (index.html), GET /assets/... (the
// embedded files) and GET /config.json (cfg). Mount it at Paths of a mux
// whose other routes are the API's.
func Handler(cfg Config) http.Handler {
	// The page talks to its own origin, the API, the hosted UI's token
	// endpoint and, with an API elsewhere, presigned S3 URLs.
	connect := "'self'"
	if cfg.APIBase != "" {
		connect += " " + cfg.APIBase + " https://*.amazonaws.com"
	}
	if cfg.Cognito != nil {
		connect += " " + cfg.Cognito.Domain
	}
	csp := "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
		"connect-src " + connect + "; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	mux := http.NewServeMux()
	for _, f := range Site(cfg) {
		pattern := "GET " + f.Path
		if f.Path == "/" {
			pattern = "GET /{$}"
		}
		mux.Handle(pattern, asset(f.Body, f.ContentType, csp))
	}
	return mux
}

// Paths are the patterns Handler serves, for a mux that mounts it beside
// the API: the API keeps answering everything else in its error shape.
var Paths = []string{"GET /{$}", "GET /config.json", "GET /assets/"}

func mustRead(name string) []byte {
	b, err := Files.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time: always there
	}
	return b
}

// asset serves body with an ETag from its content: browsers revalidate
// (no-cache) and get 304s until the binary changes.
func asset(body []byte, contentType, csp string) http.Handler {
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", csp)
		if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}
