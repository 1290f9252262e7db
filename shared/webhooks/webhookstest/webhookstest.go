// Package webhookstest starts a webhook receiver for tests that verifies
// deliveries with the official Standard Webhooks library (the Python
// package standardwebhooks, installed into .cache/venv by tools/setup.sh),
// so that our signatures are proven by someone else's verifier.
package webhookstest

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/awstest"
)

//go:embed receiver.py
var receiverPy []byte

// Receiver is a running receiver.
type Receiver struct {
	// URL is its base URL, http://127.0.0.1:PORT; any path under it but
	// /_* records a delivery.
	URL string
}

// Request is one recorded delivery.
type Request struct {
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"` // names in lower case
	// Status is what the receiver answered.
	Status int `json:"status"`
}

// Verification is the library's verdict on one delivery.
type Verification struct {
	OK      bool            `json:"ok"`
	Error   string          `json:"error"`
	Payload json.RawMessage `json:"payload"`
}

// Start starts a receiver that answers 500 to its first fail deliveries
// and 204 after. It skips tb when Python or the standardwebhooks package
// is missing (fails it when BRIGHTRUN_REQUIRE_EMULATORS=1).
func Start(tb testing.TB, fail int) *Receiver {
	tb.Helper()
	python, err := exec.LookPath("python")
	if err != nil {
		python, err = exec.LookPath("python3")
	}
	if err == nil {
		err = exec.Command(python, "-c", "import standardwebhooks").Run()
	}
	if err != nil {
		awstest.Unavailable(tb, "python with the standardwebhooks package", err, "tools/setup.sh python, with .cache/venv/bin on PATH (make test does both)")
		return nil
	}
	script := filepath.Join(tb.TempDir(), "receiver.py")
	if err := os.WriteFile(script, receiverPy, 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(python, script, "--fail", fmt.Sprint(fail))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start the webhook receiver: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		port <- strings.TrimSpace(line)
	}()
	select {
	case p := <-port:
		if p == "" {
			tb.Fatalf("the webhook receiver printed no port: %s", stderr.String())
		}
		return &Receiver{URL: "http://127.0.0.1:" + p}
	case <-time.After(30 * time.Second):
		tb.Fatalf("the webhook receiver did not start: %s", stderr.String())
	}
	return nil
}

// Log returns the deliveries received, in order.
func (r *Receiver) Log(tb testing.TB) []Request {
	tb.Helper()
	resp, err := http.Get(r.URL + "/_log")
	if err != nil {
		tb.Fatalf("read the receiver's log: %v", err)
	}
	defer resp.Body.Close()
	var out []Request
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		tb.Fatalf("decode the receiver's log: %v", err)
	}
	return out
}

// Verify asks the library whether delivery i verifies with secret, with
// the library's clock at now (the sender's fake clock).
func (r *Receiver) Verify(tb testing.TB, i int, secret string, now time.Time) Verification {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"index": i, "secret": secret, "now": now.Unix()})
	resp, err := http.Post(r.URL+"/_verify", "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("verify delivery %d: %v", i, err)
	}
	defer resp.Body.Close()
	var v Verification
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		tb.Fatalf("decode the verification of delivery %d: %v", i, err)
	}
	return v
}
