package console

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The first page's JavaScript and CSS, compressed, stay within 150 KB: what
// index.html loads and every module those modules import.
func TestTheFirstPageLoadsAtMost150KBCompressed(t *testing.T) {
	const budget = 150 << 10
	assets := firstPageAssets(t)
	total := 0
	for _, name := range assets {
		n := gzipSize(t, mustRead(name))
		t.Logf("%-34s %6d bytes gzipped", name, n)
		total += n
	}
	t.Logf("first page: %d files, %d bytes of JavaScript and CSS gzipped (budget %d)", len(assets), total, budget)
	if total > budget {
		t.Errorf("the first page loads %d bytes gzipped, want at most %d", total, budget)
	}
	for _, want := range []string{"app/main.js", "vendor/uplot/uPlot.iife.min.js", "style.css", "app/jobs.js"} {
		if !contains(assets, want) {
			t.Errorf("the first page's assets %v lack %s: the size check does not see everything", assets, want)
		}
	}
}

var (
	assetRef  = regexp.MustCompile(`(?:src|href)="/assets/([^"]+\.(?:js|css))"`)
	importRef = regexp.MustCompile(`(?m)^(?:import|export)[^'"]*from\s+'\./([^']+\.js)'|import\(\s*'\./([^']+\.js)'\s*\)`)
)

// firstPageAssets lists the JS and CSS files index.html loads, following
// the modules' relative imports.
func firstPageAssets(t *testing.T) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		body, err := Files.ReadFile(name)
		if err != nil {
			t.Fatalf("index.html or a module refers to %s, which is not embedded: %v", name, err)
		}
		out = append(out, name)
		if strings.HasSuffix(name, ".js") {
			for _, m := range importRef.FindAllStringSubmatch(string(body), -1) {
				ref := m[1] + m[2]
				visit(filepath.ToSlash(filepath.Join(filepath.Dir(name), ref)))
			}
		}
	}
	for _, m := range assetRef.FindAllStringSubmatch(string(mustRead("index.html")), -1) {
		visit(m[1])
	}
	return out
}

func gzipSize(t *testing.T, b []byte) int {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Len()
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// The vendored uPlot files are the pinned npm release's, byte for byte.
func TestTheVendoredUPlotIsThePinnedNPMRelease(t *testing.T) {
	pkg := filepath.Join("..", "tools", "console", "node_modules", "uplot")
	if _, err := os.Stat(pkg); err != nil {
		msg := "tools/console/node_modules is not installed (tools/setup.sh node): cannot compare the vendored uPlot with its npm package"
		if os.Getenv("BRIGHTRUN_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var lock struct {
		Packages map[string]struct{ Version string } `json:"packages"`
	}
	readJSON(t, filepath.Join("..", "tools", "console", "package-lock.json"), &lock)
	var installed struct{ Version string }
	readJSON(t, filepath.Join(pkg, "package.json"), &installed)
	pinned := lock.Packages["node_modules/uplot"].Version
	if pinned == "" || installed.Version != pinned {
		t.Fatalf("installed uplot %q, pinned %q: run tools/setup.sh node", installed.Version, pinned)
	}
	readme := string(mustRead("vendor/uplot/README.md"))
	if !strings.Contains(readme, "uplot@"+pinned) {
		t.Errorf("vendor/uplot/README.md does not name uplot@%s, the pinned version", pinned)
	}
	for vendored, released := range map[string]string{
		"vendor/uplot/uPlot.iife.min.js": "dist/uPlot.iife.min.js",
		"vendor/uplot/uPlot.min.css":     "dist/uPlot.min.css",
		"vendor/uplot/LICENSE":           "LICENSE",
	} {
		want, err := os.ReadFile(filepath.Join(pkg, released))
		if err != nil {
			t.Fatal(err)
		}
		if got := mustRead(vendored); !bytes.Equal(got, want) {
			t.Errorf("%s differs from uplot@%s's %s (%d bytes, want %d): copy the released file unchanged", vendored, pinned, released, len(got), len(want))
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestTheHandlerServesThePageItsAssetsAndItsSettings(t *testing.T) {
	h := Handler(Config{})
	get := func(path string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	tests := []struct {
		path, contentType, body string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/assets/app/main.js">`},
		{"/assets/app/main.js", "text/javascript; charset=utf-8", "import"},
		{"/assets/style.css", "text/css; charset=utf-8", ":root"},
		{"/assets/vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8", "uPlot"},
		{"/config.json", "application/json", `"auth":"token"`},
	}
	for _, tt := range tests {
		w := get(tt.path)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", tt.path, w.Code)
			continue
		}
		if got := w.Header().Get("Content-Type"); got != tt.contentType {
			t.Errorf("GET %s Content-Type = %q, want %q", tt.path, got, tt.contentType)
		}
		if !strings.Contains(w.Body.String(), tt.body) {
			t.Errorf("GET %s body lacks %q", tt.path, tt.body)
		}
		csp := w.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s Content-Security-Policy = %q, want nothing but this origin's scripts", tt.path, csp)
		}
		if again := get(tt.path, "If-None-Match", w.Header().Get("ETag")); again.Code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag = %d, want 304", tt.path, again.Code)
		}
	}
	// Neither the Go source nor anything outside the embedded files is served.
	for _, path := range []string{"/assets/console.go", "/assets/../console.go", "/index.html"} {
		if w := get(path); w.Code == http.StatusOK {
			t.Errorf("GET %s = 200, want it not served", path)
		}
	}
}

// Nothing in the console loads from another host: no CDN, no font host.
func TestTheConsoleLoadsNothingFromAnotherHost(t *testing.T) {
	external := regexp.MustCompile(`(?:src|href)\s*=\s*["']https?://|@import\s+url\(\s*["']?https?://|url\(\s*["']?https?://`)
	for _, name := range []string{"index.html", "style.css"} {
		if m := external.Find(mustRead(name)); m != nil {
			t.Errorf("%s loads from another host: %s", name, m)
		}
	}
}
