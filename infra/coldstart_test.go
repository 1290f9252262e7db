package infra_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/awsapp"
)

// BenchmarkColdStart measures each function's cold start on this machine:
// the bootstrap is built as sam.mk builds it, but for this machine's
// architecture (GOOS=linux GOARCH=runtime.GOARCH), started b.N times
// against a local implementation of the Lambda Runtime API
// (AWS_LAMBDA_RUNTIME_API), and timed from process start to its first
// GET /runtime/invocation/next (init-ms: the whole init, secret read
// included) and to its answer to the first event (first-ms). Secrets
// Manager is a local fake; DynamoDB, SQS, S3 and RunPod are unreachable
// addresses (connection refused), so the first events are ones that need
// none of them: GET /healthz for the HTTP functions, an S3 event of a key
// that is not a dataset for validate, a malformed message for dispatch;
// reconcile's first run fails fast on the unreachable table. peak-rss-MB is
// the process's VmHWM after the first answer.
//
//	go test -run '^$' -bench ColdStart -benchtime 20x ./infra
func BenchmarkColdStart(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the bootstraps are linux executables")
	}
	bins := b.TempDir()
	sm := fakeSecretsManager(b)
	events := map[string]string{
		"validate":  `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"incoming/notes.txt","size":5,"eTag":"e"}}}]}`,
		"dispatch":  `{"Records":[{"messageId":"m1","receiptHandle":"r","body":"not json","attributes":{"ApproximateReceiveCount":"1"},"eventSource":"aws:sqs"}]}`,
		"reconcile": `{"version":"0","id":"e","detail-type":"Scheduled Event","source":"aws.events","time":"2026-11-25T12:00:00Z","detail":{}}`,
	}
	healthz := `{"version":"2.0","routeKey":"GET /healthz","rawPath":"/healthz","rawQueryString":"","headers":{"host":"api.example"},"requestContext":{"http":{"method":"GET","path":"/healthz","protocol":"HTTP/1.1","sourceIp":"127.0.0.1"},"requestId":"r","routeKey":"GET /healthz","stage":"$default"},"isBase64Encoded":false}`

	for _, fn := range functionFolders(b) {
		bin := filepath.Join(bins, fn)
		build := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", bin, "./functions/"+fn)
		build.Dir = root
		build.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+runtime.GOARCH, "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v\n%s", fn, err, out)
		}
		event, ok := events[fn]
		if !ok {
			event = healthz
		}
		b.Run(fn, func(b *testing.B) {
			st, _ := os.Stat(bin)
			var init, first time.Duration
			var rss int64
			for range b.N {
				r := coldStart(b, bin, event, sm)
				init += r.init
				first += r.first
				rss = max(rss, r.rssKB)
			}
			b.ReportMetric(float64(init.Microseconds())/1e3/float64(b.N), "init-ms")
			b.ReportMetric(float64(first.Microseconds())/1e3/float64(b.N), "first-ms")
			b.ReportMetric(float64(rss)/1024, "peak-rss-MB")
			b.ReportMetric(float64(st.Size())/1e6, "binary-MB")
		})
	}
}

func fakeSecretsManager(tb testing.TB) string {
	// Each secret holds one value; this one passes every check.
	secret := strings.Repeat("s", 64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_ = json.NewEncoder(w).Encode(map[string]string{"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf", "Name": "app", "SecretString": secret})
	})}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

type startTimes struct {
	init, first time.Duration
	rssKB       int64
}

// coldStart runs one bootstrap until it answers its first event.
func coldStart(b *testing.B, bin, event, secretsURL string) startTimes {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var (
		mu        sync.Mutex
		start     time.Time
		nextAt    time.Time
		answerAt  time.Time
		answer    string
		served    bool
		answered  = make(chan struct{})
		closeOnce sync.Once
	)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/2018-06-01/runtime/invocation/next":
			mu.Lock()
			if served {
				mu.Unlock()
				<-r.Context().Done() // the second invocation never comes
				return
			}
			served, nextAt = true, now
			mu.Unlock()
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", "req-1")
			w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(now.Add(30*time.Second).UnixMilli(), 10))
			w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:coldstart")
			w.Header().Set("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0")
			_, _ = io.WriteString(w, event)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/2018-06-01/runtime/"):
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			if answerAt.IsZero() {
				answerAt = now
				answer = r.URL.Path + " " + string(body)
			}
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
			closeOnce.Do(func() { close(answered) })
		default:
			http.NotFound(w, r)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	unreachable := "http://127.0.0.1:1"
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"PATH=/usr/bin:/bin", "TZ=UTC",
		"AWS_LAMBDA_RUNTIME_API=" + ln.Addr().String(),
		"AWS_LAMBDA_FUNCTION_NAME=coldstart", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512",
		"AWS_LAMBDA_LOG_FORMAT=JSON", "AWS_LAMBDA_LOG_LEVEL=INFO",
		"AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1", "AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret",
		"AWS_SESSION_TOKEN=token", "AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_MAX_ATTEMPTS=1",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + secretsURL,
		"AWS_ENDPOINT_URL_DYNAMODB=" + unreachable, "AWS_ENDPOINT_URL_SQS=" + unreachable, "AWS_ENDPOINT_URL_S3=" + unreachable,
		// What template.yaml sets (each function reads its own).
		"BRIGHTRUN_TABLE=brightrun", "BRIGHTRUN_BUCKET=brightrun-bucket",
		"BRIGHTRUN_QUEUE_URL=" + unreachable + "/123456789012/jobs", "BRIGHTRUN_DEAD_LETTER_URL=" + unreachable + "/123456789012/jobs-dlq",
		"BRIGHTRUN_PUBLIC_URL=https://api.example",
		awsapp.EnvRunPodKeyARN + "=arn:aws:secretsmanager:us-east-1:123456789012:secret:runpod-AbCdEf",
		awsapp.EnvCallbackMasterARN + "=arn:aws:secretsmanager:us-east-1:123456789012:secret:callback-AbCdEf",
		awsapp.EnvCursorKeyARN + "=arn:aws:secretsmanager:us-east-1:123456789012:secret:cursor-AbCdEf",
		"RUNPOD_ENDPOINT_ID=endpoint1", "BRIGHTRUN_RUNPOD_URL=" + unreachable, "BRIGHTRUN_MAX_DISPATCH_ATTEMPTS=5",
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	mu.Lock()
	start = time.Now()
	mu.Unlock()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-answered:
	case err := <-exited:
		b.Fatalf("%s exited before answering (%v):\n%s", filepath.Base(bin), err, logs.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		b.Fatalf("%s did not answer in 30 s:\n%s", filepath.Base(bin), logs.String())
	}
	rss := peakRSS(cmd.Process.Pid)
	_ = cmd.Process.Kill()
	<-exited

	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(answer, "/init/error") {
		b.Fatalf("%s failed to start: %s\n%s", filepath.Base(bin), answer, logs.String())
	}
	if b.N == 1 {
		b.Logf("%s answered %s", filepath.Base(bin), firstLine(answer))
	}
	return startTimes{init: nextAt.Sub(start), first: answerAt.Sub(start), rssKB: rss}
}

func firstLine(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// peakRSS reads VmHWM (kB) of a running process.
func peakRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
