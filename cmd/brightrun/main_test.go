package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/runpodemu"
)

const (
	sampleFile = "../../testdata/datasets/sample.jsonl"
	badFile    = "../../testdata/datasets/bad.jsonl"
)

// stack is the local stack every test talks to: multipart from 6 MiB in
// parts of 5 MiB, so that an 11 MB file takes 3 parts.
var stack *localstack.Stack

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	home, err := os.MkdirTemp("", "brightrun-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(home)
	// Keep the config file and the upload state away from the user's.
	for k, v := range map[string]string{
		"HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, "config"), "XDG_CACHE_HOME": filepath.Join(home, "cache"),
		"BRIGHTRUN_API_URL": "", "BRIGHTRUN_TOKEN": "",
	} {
		os.Setenv(k, v)
	}
	stack, err = localstack.Open(localstack.Config{
		Addr: "127.0.0.1:0", DataDir: filepath.Join(home, "stack"), DevTokens: "dev:dev-token",
		API:      httpapi.Config{MultipartThreshold: 6 << 20, PartSize: 5 << 20},
		Emulator: runpodemu.Config{StepsPerSecond: 10, Faults: faults},
		// Reconciliation confirms cancels with RunPod: run it often.
		ReconcileEvery: 500 * time.Millisecond,
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open the local stack:", err)
		return 1
	}
	if err := stack.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start the local stack:", err)
		return 1
	}
	defer stack.Close(context.Background())
	return m.Run()
}

// Jobs whose lora_dropout is one of these markers meet a fault on the
// RunPod emulator.
const (
	dropoutFails = "0.07" // out of memory at step 2
	dropoutStuck = "0.08" // a cold start that lasts long enough to cancel the job
)

func faults(j runpodemu.JobInfo) runpodemu.Fault {
	if j.Spec == nil {
		return runpodemu.Fault{}
	}
	switch fmt.Sprint(j.Spec.Hyperparameters.LoRADropout) {
	case dropoutFails:
		return runpodemu.Fault{FailAtStep: 2, FailCode: "oom"}
	case dropoutStuck:
		return runpodemu.Fault{StartDelay: time.Minute}
	}
	return runpodemu.Fault{}
}

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs the CLI against the test stack as main does: the error line
// goes to stderr, the error decides the exit status.
func cli(t *testing.T, args ...string) result {
	t.Helper()
	return cliAt(t, stack.URL(), "dev-token", args...)
}

func cliAt(t *testing.T, url, token string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	all := append([]string{"--api-url", url, "--token", token}, args...)
	err := run(all, strings.NewReader(""), &out, &errb)
	if line := errorLine(err); line != "" {
		fmt.Fprintln(&errb, line)
	}
	return result{code: exitCode(err), stdout: out.String(), stderr: errb.String()}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// decode parses a --json output into v.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, r)
	}
}

func apiClient() *client.Client { return client.New(stack.URL(), "dev-token") }

var (
	sampleOnce sync.Once
	sampleID   string
)

// readySample uploads the sample once and returns its (ready) id.
func readySample(t *testing.T) string {
	t.Helper()
	sampleOnce.Do(func() {
		r := cli(t, "datasets", "upload", sampleFile, "--name", "sample", "--json")
		var d api.DatasetView
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &d) == nil {
			sampleID = d.ID
		}
	})
	if sampleID == "" {
		t.Fatal("the sample did not upload")
	}
	return sampleID
}

// synthetic writes a valid dataset of about size bytes.
func synthetic(t *testing.T, size, seed int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("synthetic-%d.jsonl", seed))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := dataset.WriteSynthetic(f, size, seed, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func sha256File(t *testing.T, path string) (string, int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), int64(len(data))
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"a good file is valid with its counts", []string{"validate", sampleFile}, 0, []string{"valid", "examples", "40 valid", "tokens"}},
		{"a bad file is invalid with its issues by line", []string{"validate", badFile}, 1, []string{"INVALID", "invalid_json", "line 2", "too_few_examples"}},
		{"a missing file is an I/O error", []string{"validate", "no-such-file.jsonl"}, 2, nil},
		{"no file is a usage error", []string{"validate"}, 2, nil},
		{"an out-of-range sequence length is a usage error", []string{"validate", sampleFile, "--max-seq-length", "10"}, 2, nil},
		{"a short sequence length warns about long examples", []string{"validate", sampleFile, "--max-seq-length", "256"}, 0, []string{"example_too_long"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, tt.args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s", r.code, tt.wantCode, r)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q\n%s", want, r)
				}
			}
		})
	}

	t.Run("--json prints the report of a good file", func(t *testing.T) {
		r := cli(t, "validate", sampleFile, "--json")
		var rep dataset.Report
		decode(t, r, &rep)
		if r.code != 0 || !rep.Valid || rep.Examples != 40 {
			t.Errorf("exit %d, valid %v, examples %d; want 0, true, 40", r.code, rep.Valid, rep.Examples)
		}
	})
	t.Run("--json prints the report of a bad file and exits 1", func(t *testing.T) {
		r := cli(t, "validate", badFile, "--json")
		var rep dataset.Report
		decode(t, r, &rep)
		if r.code != 1 || rep.Valid || rep.ErrorCounts[dataset.CodeInvalidJSON] != 1 || len(rep.Issues) == 0 {
			t.Errorf("exit %d, valid %v, invalid_json %d, %d issues; want 1, false, 1, some", r.code, rep.Valid, rep.ErrorCounts[dataset.CodeInvalidJSON], len(rep.Issues))
		}
	})
}

func TestConfig(t *testing.T) {
	path, err := configPath()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	show := func(t *testing.T) settings {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run([]string{"config", "show", "--json"}, nil, &out, &errb); err != nil {
			t.Fatalf("config show: %v %s", err, errb.String())
		}
		var s settings
		if err := json.Unmarshal(out.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("without settings the local stack's defaults apply", func(t *testing.T) {
		s := show(t)
		if s.APIURL.Value != defaultAPIURL || s.Token.Value != defaultToken || s.APIURL.Source != "default" {
			t.Errorf("config show = %+v, want the defaults", s)
		}
	})
	t.Run("set stores the URL and token in a file only its owner reads", func(t *testing.T) {
		var out, errb bytes.Buffer
		if err := run([]string{"config", "set", "api_url", "https://api.example.com/"}, nil, &out, &errb); err != nil {
			t.Fatal(err)
		}
		if err := run([]string{"config", "set", "token", "-"}, strings.NewReader("secret-token-1234\n"), &out, &errb); err != nil {
			t.Fatal(err)
		}
		s := show(t)
		if s.APIURL.Value != "https://api.example.com" || s.APIURL.Source != "config file" || s.Token.Value != maskToken("secret-token-1234") {
			t.Errorf("config show = %+v, want the stored values, the token masked", s)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("config file mode = %v, want 0600", fi.Mode().Perm())
		}
	})
	t.Run("environment variables override the file", func(t *testing.T) {
		t.Setenv("BRIGHTRUN_API_URL", "http://10.0.0.1:8080")
		s := show(t)
		if s.APIURL.Value != "http://10.0.0.1:8080" || s.APIURL.Source != "env BRIGHTRUN_API_URL" {
			t.Errorf("config show = %+v, want the environment's URL", s)
		}
	})
	t.Run("an unknown key or a bad URL is a usage error", func(t *testing.T) {
		for _, args := range [][]string{{"config", "set", "colour", "red"}, {"config", "set", "api_url", "localhost:8080"}} {
			err := run(args, nil, io.Discard, io.Discard)
			if exitCode(err) != 2 {
				t.Errorf("%v: exit %d (%v), want 2", args, exitCode(err), err)
			}
		}
	})
}

func TestUploadSingle(t *testing.T) {
	r := cli(t, "datasets", "upload", sampleFile, "--name", "support chats")
	if r.code != 0 || !strings.Contains(r.stdout, "ready") || !strings.Contains(r.stdout, "40 valid") {
		t.Fatalf("upload of the sample: want exit 0 and a ready summary\n%s", r)
	}
	id := strings.Fields(r.stdout)[0]

	t.Run("show prints the dataset as JSON", func(t *testing.T) {
		var d api.DatasetView
		r := cli(t, "datasets", "show", id, "--json")
		decode(t, r, &d)
		want, _ := sha256File(t, sampleFile)
		if d.ID != id || d.Status != pipeline.DatasetReady || d.Name != "support chats" || d.SHA256 != want || d.Validation == nil || d.Validation.Examples != 40 {
			t.Errorf("show --json = %+v, want %s ready with 40 examples", d, id)
		}
	})
	t.Run("list includes it", func(t *testing.T) {
		var list client.DatasetList
		decode(t, cli(t, "datasets", "list", "--json"), &list)
		found := false
		for _, d := range list.Datasets {
			found = found || d.ID == id
		}
		if !found {
			t.Errorf("datasets list --json lacks %s", id)
		}
		if r := cli(t, "datasets", "list"); r.code != 0 || !strings.Contains(r.stdout, id) {
			t.Errorf("datasets list lacks %s\n%s", id, r)
		}
	})
	t.Run("its report is valid", func(t *testing.T) {
		var rep dataset.Report
		r := cli(t, "datasets", "report", id, "--json")
		decode(t, r, &rep)
		if r.code != 0 || !rep.Valid {
			t.Errorf("report: exit %d valid %v, want 0 true", r.code, rep.Valid)
		}
	})
	t.Run("delete removes it", func(t *testing.T) {
		if r := cli(t, "datasets", "delete", id); r.code != 0 {
			t.Fatalf("delete\n%s", r)
		}
		r := cli(t, "datasets", "show", id)
		want := fmt.Sprintf("error: not_found: dataset %q not found\n", id)
		if r.code != 3 || r.stderr != want {
			t.Errorf("show after delete: exit %d stderr %q, want 3 %q", r.code, r.stderr, want)
		}
	})
}

func TestUploadInvalid(t *testing.T) {
	t.Run("an invalid file is refused before anything is sent", func(t *testing.T) {
		before, err := apiClient().ListDatasets(t.Context(), client.ListOptions{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		r := cli(t, "datasets", "upload", badFile)
		if r.code != 1 || !strings.Contains(r.stdout, "invalid_json") || !strings.Contains(r.stderr, "--force") {
			t.Fatalf("want exit 1, the summary and a hint about --force\n%s", r)
		}
		after, err := apiClient().ListDatasets(t.Context(), client.ListOptions{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(after.Datasets) != len(before.Datasets) {
			t.Errorf("a refused upload created a dataset: %d before, %d after", len(before.Datasets), len(after.Datasets))
		}
	})
	t.Run("with --force it is uploaded and the server marks it invalid", func(t *testing.T) {
		r := cli(t, "datasets", "upload", badFile, "--force", "--json")
		var d api.DatasetView
		decode(t, r, &d)
		if r.code != 1 || d.Status != pipeline.DatasetInvalid {
			t.Errorf("exit %d status %s, want 1 invalid\n%s", r.code, d.Status, r)
		}
	})
}

func TestUploadMultipart(t *testing.T) {
	path := synthetic(t, 11_000_000, 1)
	sha, size := sha256File(t, path)
	r := cli(t, "datasets", "upload", path, "--json")
	var d api.DatasetView
	decode(t, r, &d)
	if r.code != 0 || d.Status != pipeline.DatasetReady || d.SizeBytes != size || d.SHA256 != sha {
		t.Fatalf("exit %d, dataset %+v; want 0, ready, %d bytes\n%s", r.code, d, size, r)
	}
	if !strings.Contains(r.stderr, "in 3 parts") {
		t.Errorf("stderr does not say 3 parts\n%s", r)
	}
	state, _ := uploadStatePath(sha)
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("the upload state %s is left after the upload completed (%v)", state, err)
	}
}

// startUpload does what an interrupted run leaves behind: the dataset
// created, part 1 sent, and the state file.
func startUpload(t *testing.T, path string) *uploadState {
	t.Helper()
	sha, size := sha256File(t, path)
	cl := apiClient()
	created, err := cl.CreateDataset(t.Context(), client.CreateDatasetRequest{Name: "interrupted", SizeBytes: size, SHA256: sha})
	if err != nil {
		t.Fatal(err)
	}
	if created.Upload.Type != "multipart" || len(created.Upload.Parts) != 3 {
		t.Fatalf("upload plan = %s with %d parts, want multipart with 3", created.Upload.Type, len(created.Upload.Parts))
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p1 := created.Upload.Parts[0]
	etag, err := cl.Put(t.Context(), p1.SignedRequest, io.NewSectionReader(f, 0, p1.SizeBytes), p1.SizeBytes)
	if err != nil {
		t.Fatal(err)
	}
	st := &uploadState{Version: 1, APIURL: stack.URL(), File: path, SizeBytes: size, SHA256: sha,
		DatasetID: created.Dataset.ID, Upload: created.Upload, ETags: map[int]string{1: etag}, CreatedAt: time.Now()}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestUploadResumes(t *testing.T) {
	t.Run("an interrupted multipart upload resumes with the parts left", func(t *testing.T) {
		path := synthetic(t, 11_000_000, 2)
		st := startUpload(t, path)
		r := cli(t, "datasets", "upload", path, "--json")
		var d api.DatasetView
		decode(t, r, &d)
		if r.code != 0 || d.ID != st.DatasetID || d.Status != pipeline.DatasetReady {
			t.Fatalf("exit %d, dataset %s %s; want 0 and %s ready\n%s", r.code, d.ID, d.Status, st.DatasetID, r)
		}
		want := fmt.Sprintf("resuming the upload of %s: 1 of 3 parts already uploaded", st.DatasetID)
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q\n%s", want, r)
		}
	})
	t.Run("an upload whose URLs expired starts over and says so", func(t *testing.T) {
		path := synthetic(t, 11_000_000, 3)
		st := startUpload(t, path)
		for i := range st.Upload.Parts {
			st.Upload.Parts[i].ExpiresAt = time.Now().Add(-time.Minute)
		}
		if err := st.save(); err != nil {
			t.Fatal(err)
		}
		r := cli(t, "datasets", "upload", path, "--json")
		var d api.DatasetView
		decode(t, r, &d)
		if r.code != 0 || d.ID == st.DatasetID || d.Status != pipeline.DatasetReady {
			t.Fatalf("exit %d, dataset %s %s; want 0 and a new ready dataset\n%s", r.code, d.ID, d.Status, r)
		}
		if !strings.Contains(r.stderr, "expired") || !strings.Contains(r.stderr, "Starting over") {
			t.Errorf("stderr does not explain the expiry\n%s", r)
		}
		if _, err := apiClient().GetDataset(t.Context(), st.DatasetID); exitCode(err) != 3 {
			t.Errorf("the stale dataset %s is still there (%v)", st.DatasetID, err)
		}
	})
}

func TestEstimate(t *testing.T) {
	id := readySample(t)
	t.Run("the table marks the cheapest and fastest GPUs and those the model does not fit", func(t *testing.T) {
		r := cli(t, "estimate", id)
		for _, want := range []string{"cheapest", "fastest", "DURATION (LOW – EXPECTED – HIGH)", "does not fit:", "GiB of GPU memory"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("estimate lacks %q\n%s", want, r)
			}
		}
		if r.code != 0 {
			t.Errorf("exit %d, want 0", r.code)
		}
	})
	t.Run("--json prints the API's estimate with overrides applied", func(t *testing.T) {
		var est client.Estimate
		r := cli(t, "estimate", id, "--preset", "fast", "--set", "lora_rank=32", "--gpu", "h100-80gb", "--json")
		decode(t, r, &est)
		if est.Preset != "fast" || est.Estimate.GPU != "h100-80gb" || est.Estimate.Hyperparameters.LoRARank != 32 || len(est.Comparison.Estimates) == 0 {
			t.Errorf("estimate --json = preset %s gpu %s rank %d, %d GPUs; want fast h100-80gb 32", est.Preset, est.Estimate.GPU, est.Estimate.Hyperparameters.LoRARank, len(est.Comparison.Estimates))
		}
	})
	t.Run("an unknown hyperparameter is a usage error", func(t *testing.T) {
		if r := cli(t, "estimate", id, "--set", "colour=red"); r.code != 2 {
			t.Errorf("exit %d, want 2\n%s", r.code, r)
		}
	})
	t.Run("an out-of-range hyperparameter is the API's invalid error", func(t *testing.T) {
		r := cli(t, "estimate", id, "--set", "lora_rank=1000")
		if r.code != 3 || !strings.HasPrefix(r.stderr, "error: invalid: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("want exit 3 and one line `error: invalid: …`\n%s", r)
		}
	})
	t.Run("a small dataset holds nothing out by default", func(t *testing.T) {
		if r := cli(t, "estimate", id); r.code != 0 || !strings.Contains(r.stdout, "evaluation: none") {
			t.Errorf("want no evaluation below 200 examples\n%s", r)
		}
	})
	t.Run("--validation-split holds out a share and shows its evaluation", func(t *testing.T) {
		var est client.Estimate
		decode(t, cli(t, "estimate", id, "--validation-split", "0.2", "--json"), &est)
		e := est.Estimate.Evaluation
		if e == nil || e.Source != "held_out" || e.Examples != 8 || e.TrainingExamples != 32 || e.Evaluations < 1 {
			t.Fatalf("estimate --validation-split 0.2 --json: evaluation %+v, want 8 of the sample's 40 examples held out", e)
		}
		r := cli(t, "estimate", id, "--validation-split", "0.2")
		if want := "evaluation: 8 held-out examples (split 0.2), 32 train"; r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("estimate lacks %q\n%s", want, r)
		}
	})
	t.Run("a share over a half is the API's invalid error naming the field", func(t *testing.T) {
		r := cli(t, "estimate", id, "--validation-split", "0.7")
		if r.code != 3 || !strings.Contains(r.stderr, "validation_split must be between 0 and 0.5") {
			t.Errorf("want exit 3 naming validation_split\n%s", r)
		}
	})
	t.Run("a share and a validation dataset together are a usage error", func(t *testing.T) {
		if r := cli(t, "estimate", id, "--validation-split", "0.1", "--validation-dataset", "ds_x"); r.code != 2 {
			t.Errorf("exit %d, want 2\n%s", r.code, r)
		}
	})
	t.Run("the training dataset is no validation dataset", func(t *testing.T) {
		r := cli(t, "estimate", id, "--validation-dataset", id)
		if r.code != 3 || !strings.Contains(r.stderr, "is the training dataset") {
			t.Errorf("want exit 3 and why\n%s", r)
		}
	})
}

func TestAJobEvaluatesOnASecondDataset(t *testing.T) {
	id := readySample(t)
	var second api.DatasetView
	decode(t, cli(t, "datasets", "upload", synthetic(t, 64<<10, 7), "--name", "held-out", "--json"), &second)
	if second.Status != pipeline.DatasetReady {
		t.Fatalf("the second dataset is %s, want ready", second.Status)
	}
	r := cli(t, "estimate", id, "--validation-dataset", second.ID)
	if want := "evaluation: the first "; r.code != 0 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, second.ID) {
		t.Errorf("estimate lacks %q and %s\n%s", want, second.ID, r)
	}
	var job api.JobView
	r = cli(t, "jobs", "create", id, "--validation-dataset", second.ID, "--set", "lora_dropout="+dropoutStuck, "--json")
	decode(t, r, &job)
	if job.Validation == nil || job.Validation.DatasetID != second.ID || job.Estimate == nil || job.Estimate.Evaluation == nil || job.Estimate.Evaluation.DatasetID != second.ID {
		t.Errorf("jobs create --validation-dataset: validation %+v, estimate %+v; want both on %s", job.Validation, job.Estimate, second.ID)
	}
	if r := cli(t, "jobs", "show", job.ID); !strings.Contains(r.stdout, "evaluation") || !strings.Contains(r.stdout, second.ID) {
		t.Errorf("jobs show lacks the evaluation\n%s", r)
	}
	if r := cli(t, "datasets", "delete", second.ID); r.code == 0 || !strings.Contains(r.stderr, "as its validation dataset") {
		t.Errorf("deleting the job's validation dataset: want a refusal saying why\n%s", r)
	}
	cli(t, "jobs", "cancel", job.ID)
}

func TestJobs(t *testing.T) {
	id := readySample(t)
	var job api.JobView
	r := cli(t, "jobs", "create", id, "--name", "first", "--budget", "50", "--set", "lora_dropout="+dropoutStuck, "--idempotency-key", "test-key-1", "--json")
	decode(t, r, &job)
	// The dispatcher may have claimed the job before the answer was sent.
	if r.code != 0 || job.ID == "" || job.Status.Terminal() || job.Name != "first" || job.BudgetUSD == nil || *job.BudgetUSD != 50 {
		t.Fatalf("jobs create: exit %d job %+v, want a new job\n%s", r.code, job, r)
	}

	t.Run("a retry with the same idempotency key returns the same job", func(t *testing.T) {
		var again api.JobView
		decode(t, cli(t, "jobs", "create", id, "--name", "first", "--budget", "50", "--set", "lora_dropout="+dropoutStuck, "--idempotency-key", "test-key-1", "--json"), &again)
		if again.ID != job.ID {
			t.Errorf("second create = %s, want %s", again.ID, job.ID)
		}
	})
	t.Run("the same key for another request is a conflict", func(t *testing.T) {
		r := cli(t, "jobs", "create", id, "--name", "second", "--idempotency-key", "test-key-1")
		if r.code != 3 || !strings.HasPrefix(r.stderr, "error: conflict: ") {
			t.Errorf("want exit 3 and a conflict\n%s", r)
		}
	})
	t.Run("without a key each create makes a new job", func(t *testing.T) {
		r := cli(t, "jobs", "create", id, "--preset", "fast")
		if r.code != 0 || !strings.Contains(r.stdout, "created job") || strings.Contains(r.stdout, job.ID) {
			t.Errorf("want a new job\n%s", r)
		}
	})
	t.Run("list shows it", func(t *testing.T) {
		var list client.JobList
		decode(t, cli(t, "jobs", "list", "--json"), &list)
		found := false
		for _, j := range list.Jobs {
			found = found || j.ID == job.ID
		}
		if !found {
			t.Errorf("jobs list --json lacks %s", job.ID)
		}
		if r := cli(t, "jobs", "list"); r.code != 0 || !strings.Contains(r.stdout, job.ID) {
			t.Errorf("jobs list lacks %s\n%s", job.ID, r)
		}
	})
	t.Run("list filters by status", func(t *testing.T) {
		var list client.JobList
		decode(t, cli(t, "jobs", "list", "--status", "completed", "--json"), &list)
		for _, j := range list.Jobs {
			if j.Status != pipeline.JobCompleted {
				t.Errorf("jobs list --status completed lists %s in %s", j.ID, j.Status)
			}
		}
	})
	t.Run("show prints the job and its estimate", func(t *testing.T) {
		r := cli(t, "jobs", "show", job.ID)
		if r.code != 0 || !strings.Contains(r.stdout, "estimate") || !strings.Contains(r.stdout, "$50.00") {
			t.Errorf("jobs show\n%s", r)
		}
	})
	t.Run("cancel stops it", func(t *testing.T) {
		var j api.JobView
		r := cli(t, "jobs", "cancel", job.ID, "--json")
		decode(t, r, &j)
		if r.code != 0 || (j.Status != pipeline.JobCancelled && j.Status != pipeline.JobCancelRequested) {
			t.Errorf("cancel: exit %d status %s, want 0 and cancelled or cancel_requested", r.code, j.Status)
		}
	})
	t.Run("watching a cancelled job prints the outcome and exits 1", func(t *testing.T) {
		r := cli(t, "jobs", "watch", job.ID, "--interval", "500ms")
		if r.code != 1 || !strings.Contains(r.stdout, "cancelled") {
			t.Errorf("want exit 1 and the outcome\n%s", r)
		}
	})
	t.Run("downloading a job without an adapter exits 1", func(t *testing.T) {
		r := cli(t, "jobs", "download", job.ID, t.TempDir())
		if r.code != 1 || !strings.Contains(r.stderr, "no adapter") {
			t.Errorf("want exit 1 and why\n%s", r)
		}
	})
}

// A job runs on the RunPod emulator: watch follows it to the end and
// download fetches its adapter.
func TestWatchAndDownload(t *testing.T) {
	id := readySample(t)
	var job api.JobView
	decode(t, cli(t, "jobs", "create", id, "--name", "watched", "--json"), &job)

	r := cli(t, "jobs", "watch", job.ID, "--interval", "500ms")
	if r.code != 0 || !strings.Contains(r.stdout, "completed") || !strings.Contains(r.stdout, "brightrun jobs download "+job.ID) {
		t.Fatalf("watch: want exit 0 and the outcome\n%s", r)
	}
	if !strings.Contains(r.stdout, "step ") || !strings.Contains(r.stdout, "loss ") {
		t.Errorf("watch printed no progress line\n%s", r)
	}

	dir := filepath.Join(t.TempDir(), "adapter")
	var files []downloadedFile
	r = cli(t, "jobs", "download", job.ID, dir, "--json")
	decode(t, r, &files)
	if r.code != 0 || len(files) == 0 {
		t.Fatalf("download: exit %d, %d files\n%s", r.code, len(files), r)
	}
	for _, f := range files {
		sum, size := sha256File(t, f.Path)
		if sum != f.SHA256 || size != f.SizeBytes || f.Status != "downloaded" {
			t.Errorf("%s: %d bytes sha256 %s status %s, want %d bytes %s downloaded", f.Path, size, sum, f.Status, f.SizeBytes, f.SHA256)
		}
	}

	t.Run("a second download finds the files unchanged", func(t *testing.T) {
		var again []downloadedFile
		r := cli(t, "jobs", "download", job.ID, dir, "--json")
		decode(t, r, &again)
		for _, f := range again {
			if f.Status != "unchanged" {
				t.Errorf("%s: %s, want unchanged", f.Path, f.Status)
			}
		}
	})
	t.Run("a different file in the way is kept unless --force", func(t *testing.T) {
		victim := files[0].Path
		if err := os.WriteFile(victim, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := cli(t, "jobs", "download", job.ID, dir)
		if got, _ := os.ReadFile(victim); r.code != 1 || string(got) != "mine" || !strings.Contains(r.stderr, "--force") {
			t.Errorf("without --force: exit %d, file %q; want 1 and the file kept\n%s", r.code, got, r)
		}
		r = cli(t, "jobs", "download", job.ID, dir, "--force")
		if sum, _ := sha256File(t, victim); r.code != 0 || sum != files[0].SHA256 {
			t.Errorf("with --force: exit %d, sha256 %s; want 0 and the artifact\n%s", r.code, sum, r)
		}
	})
	t.Run("a failed job ends watch with its error and advice, exit 1", func(t *testing.T) {
		var failing api.JobView
		decode(t, cli(t, "jobs", "create", id, "--set", "lora_dropout="+dropoutFails, "--json"), &failing)
		r := cli(t, "jobs", "watch", failing.ID, "--interval", "500ms")
		if r.code != 1 || !strings.Contains(r.stdout, "failed: oom") {
			t.Errorf("want exit 1 and the failure\n%s", r)
		}
	})
}

func TestAPIErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	tests := []struct {
		name      string
		url       string
		token     string
		args      []string
		wantCode  int
		wantFirst string // the first line of stderr
	}{
		{"a missing dataset is not_found on one line", stack.URL(), "dev-token", []string{"datasets", "show", "ds_nope"}, 3, `error: not_found: dataset "ds_nope" not found`},
		{"a missing job is not_found on one line", stack.URL(), "dev-token", []string{"jobs", "cancel", "job_nope"}, 3, `error: not_found: job "job_nope" not found`},
		{"a wrong token is unauthorized", stack.URL(), "wrong", []string{"datasets", "list"}, 3, "error: unauthorized: "},
		{"a job on a missing dataset is refused", stack.URL(), "dev-token", []string{"jobs", "create", "ds_nope"}, 3, `error: not_found: dataset "ds_nope" not found`},
		{"an API that is down is exit 4", down, "dev-token", []string{"datasets", "list"}, 4, "error: could not reach the API at " + down},
		{"an unknown command is a usage error", stack.URL(), "dev-token", []string{"datasets", "frobnicate"}, 2, `error: unknown command "frobnicate"`},
		{"an unknown flag is a usage error", stack.URL(), "dev-token", []string{"jobs", "list", "--colour"}, 2, "error: unknown flag: --colour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cliAt(t, tt.url, tt.token, tt.args...)
			first, _, _ := strings.Cut(r.stderr, "\n")
			if r.code != tt.wantCode || !strings.HasPrefix(first, tt.wantFirst) || strings.Contains(r.stderr, "{") {
				t.Errorf("exit %d, stderr %q; want %d and a line starting %q", r.code, r.stderr, tt.wantCode, tt.wantFirst)
			}
		})
	}
}
