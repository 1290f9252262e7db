// Package awstest starts AWS emulators for the adapters' tests: moto server
// (DynamoDB, SQS and S3 on one port) on a free loopback port, once per test
// binary, stopped by its process id when the binary ends.
//
// A test that needs an emulator calls Moto(t); the package's TestMain calls
// Main(m) so that the emulator is stopped at the end. When the emulator
// cannot start the test is skipped with the reason, unless the environment
// sets BRIGHTRUN_REQUIRE_EMULATORS=1 (as CI does): then it fails.
//
// Install the emulator with
//
//	make setup   (tools/setup.sh: moto into .cache/venv, versitygw into .cache/bin; make test puts both on PATH)
//
// BRIGHTRUN_MOTO_ENDPOINT=http://127.0.0.1:PORT uses a moto server that is
// already running instead of starting one.
package awstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Environment variables the package reads.
const (
	// RequireEnv, set to 1, turns a missing emulator into a test failure.
	RequireEnv = "BRIGHTRUN_REQUIRE_EMULATORS"
	// MotoEndpointEnv names a moto server already running.
	MotoEndpointEnv = "BRIGHTRUN_MOTO_ENDPOINT"
)

// The dummy credentials and region every emulator is called with.
const (
	AccessKeyID     = "AKIDBRIGHTRUNTEST"
	SecretAccessKey = "brightrun-test-secret-key"
	Region          = "us-east-1"
)

// Emulator is a running emulator.
type Emulator struct {
	// Name says which emulator it is, for messages.
	Name string
	// Endpoint is its base URL, http://127.0.0.1:PORT.
	Endpoint string
	// Config reaches it with dummy credentials; every SDK client made from it
	// talks to Endpoint.
	Config aws.Config

	cmd     *exec.Cmd
	logs    *tail
	done    chan struct{}
	cleanup func()
}

// Logs returns the last lines the emulator printed.
func (e *Emulator) Logs() string {
	if e.logs == nil {
		return ""
	}
	return e.logs.String()
}

var (
	motoOnce sync.Once
	moto     *Emulator
	motoErr  error

	serialOnce sync.Once
	serial     *Emulator
	serialErr  error

	gwOnce sync.Once
	gw     *Emulator
	gwErr  error

	runningMu sync.Mutex
	running   []*Emulator
)

// Moto returns the moto server shared by the test binary, starting it on
// first use. It skips tb when moto cannot start (fails it when
// BRIGHTRUN_REQUIRE_EMULATORS=1).
func Moto(tb testing.TB) *Emulator {
	tb.Helper()
	motoOnce.Do(func() { moto, motoErr = startMoto() })
	if motoErr != nil {
		Unavailable(tb, "moto server", motoErr, "run make setup, or go test through make test (it puts .cache/venv/bin and .cache/bin on PATH)")
	}
	return moto
}

// Unavailable skips tb because the named emulator could not start, or fails
// it when BRIGHTRUN_REQUIRE_EMULATORS=1. install says how to install it.
func Unavailable(tb testing.TB, name string, err error, install string) {
	tb.Helper()
	msg := fmt.Sprintf("%s unavailable: %v (install it with `%s`)", name, err, install)
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("%s; %s=1, so this is a failure", msg, RequireEnv)
		return
	}
	tb.Skipf("%s; skipping (set %s=1 to fail instead)", msg, RequireEnv)
}

// Main runs the tests and then stops every emulator this package started.
// Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// StopAll stops every emulator this package started.
func StopAll() {
	runningMu.Lock()
	list := running
	running = nil
	runningMu.Unlock()
	for _, e := range list {
		e.stop()
	}
}

// UniqueName returns prefix followed by a random suffix, lower case, fit
// for a table, queue or bucket name.
func UniqueName(prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

// NewConfig returns an aws.Config that reaches endpoint with the dummy
// credentials.
func NewConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		BaseEndpoint: aws.String(endpoint),
		HTTPClient:   &http.Client{Timeout: 60 * time.Second},
		// Emulators answer fast; a short retry budget keeps failing tests short.
		RetryMaxAttempts: 2,
		// Send a checksum only when an operation requires one: the emulators
		// speak plain HTTP.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
}

// MotoSerial returns a moto server of the test binary's own that answers
// one request at a time. moto's DynamoDB checks a write's condition and then
// writes, without a lock, so under its default threaded server two
// conditional writes to one item can both pass; DynamoDB itself applies
// them one after the other. Tests of that atomicity (two dispatchers racing
// to claim one job) use this server; it suits no long poll (an SQS receive
// that waits holds every other request back).
func MotoSerial(tb testing.TB) *Emulator {
	tb.Helper()
	serialOnce.Do(func() { serial, serialErr = startMotoWith(serialMotoCommand) })
	if serialErr != nil {
		Unavailable(tb, "moto server (serial)", serialErr, "run make setup, or go test through make test (it puts .cache/venv/bin and .cache/bin on PATH)")
	}
	return serial
}

// serialMoto runs moto's own WSGI application in werkzeug's server with
// threading off: argv[1] and argv[2] are the host and port.
const serialMoto = `import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app), threaded=False)
`

func serialMotoCommand() ([]string, error) {
	argv, err := motoCommand()
	if err != nil {
		return nil, err
	}
	if len(argv) != 3 || argv[1] != "-m" {
		return nil, errors.New("a serial moto server needs python3 with moto[server] (moto_server alone cannot run one)")
	}
	return []string{argv[0], "-c", serialMoto}, nil
}

func startMoto() (*Emulator, error) {
	if ep := os.Getenv(MotoEndpointEnv); ep != "" {
		if err := waitReady(context.Background(), ep, nil, 10*time.Second); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", MotoEndpointEnv, ep, err)
		}
		return &Emulator{Name: "moto server", Endpoint: ep, Config: NewConfig(ep)}, nil
	}
	return startMotoWith(motoCommand)
}

// startMotoWith starts the moto server that command gives on a free port;
// a command ending in "-c" script takes the host and port as arguments.
func startMotoWith(command func() ([]string, error)) (*Emulator, error) {
	argv, err := command()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for try := 0; try < 3; try++ { // a port taken between choosing and binding: try another
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := append(append([]string{}, argv...), "-H", "127.0.0.1", "-p", fmt.Sprint(port))
		if len(argv) == 3 && argv[1] == "-c" {
			args = append(append([]string{}, argv...), "127.0.0.1", fmt.Sprint(port))
		}
		e, err := start("moto server", args, []string{
			// Region and credentials the SDK signs with; moto accepts any.
			"AWS_DEFAULT_REGION=" + Region,
			"AWS_ACCESS_KEY_ID=" + AccessKeyID,
			"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		}, fmt.Sprintf("http://127.0.0.1:%d", port), 60*time.Second, nil)
		if err == nil {
			return e, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// motoCommand finds moto's server: moto_server on PATH, or python3 -m
// moto.server where python3 can import it.
func motoCommand() ([]string, error) {
	python := "python3"
	if p := os.Getenv("BRIGHTRUN_PYTHON"); p != "" {
		python = p
	}
	if path, err := exec.LookPath(python); err == nil {
		probe := exec.Command(path, "-c", "import moto.server, flask, flask_cors")
		if out, err := probe.CombinedOutput(); err == nil {
			return []string{path, "-m", "moto.server"}, nil
		} else if _, lerr := exec.LookPath("moto_server"); lerr != nil {
			return nil, fmt.Errorf("%s cannot import moto's server: %s", python, lastLine(out))
		}
	}
	if path, err := exec.LookPath("moto_server"); err == nil {
		return []string{path}, nil
	}
	return nil, errors.New("neither python3 with moto[server] nor moto_server found")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs argv, and waits until endpoint answers HTTP.
func start(name string, argv, env []string, endpoint string, timeout time.Duration, cleanup func()) (*Emulator, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	logs := &tail{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = logs, logs
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		if cleanup != nil {
			cleanup()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	e := &Emulator{Name: name, Endpoint: endpoint, Config: NewConfig(endpoint), cmd: cmd, logs: logs, done: make(chan struct{}), cleanup: cleanup}
	go func() { _ = cmd.Wait(); close(e.done) }()
	if err := waitReady(context.Background(), endpoint, e.done, timeout); err != nil {
		e.stop()
		return nil, fmt.Errorf("%s (%s) did not come up: %w; its output ends:\n%s", name, strings.Join(argv, " "), err, logs.String())
	}
	runningMu.Lock()
	running = append(running, e)
	runningMu.Unlock()
	return e, nil
}

// waitReady polls endpoint until it answers any HTTP response.
func waitReady(ctx context.Context, endpoint string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("the process exited")
		case <-ctx.Done():
			return fmt.Errorf("no answer within %s: %w", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the process by its id: SIGTERM, then SIGKILL after a grace
// period; then it removes what the emulator kept on disk.
func (e *Emulator) stop() {
	if e.cleanup != nil {
		defer e.cleanup()
	}
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	select {
	case <-e.done:
		return
	default:
	}
	_ = terminate(e.cmd.Process)
	select {
	case <-e.done:
	case <-time.After(3 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.buf, nil))
}
