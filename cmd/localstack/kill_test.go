package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The local stack killed with SIGKILL in the middle of a running job, then
// started again on the same data: everything recorded before the kill is
// there, and the job does not stay stuck: reconciliation finds that its
// run is gone (the RunPod emulator lives in the killed process) and ends it
// as failed with the reason.
func TestSIGKILLMidJobLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the local stack: skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "localstack")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	base := "http://" + addr
	data := filepath.Join(dir, "data")
	start := func(extra ...string) *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "DEMO=0", "BRIGHTRUN_ADDR="+addr, "BRIGHTRUN_DATA="+data,
			"BRIGHTRUN_EMULATOR_STEPS_PER_SECOND=2", "BRIGHTRUN_RECONCILE_EVERY=300ms", "BRIGHTRUN_STALE_AFTER=1s")
		cmd.Env = append(cmd.Env, extra...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(30 * time.Second)
		for {
			if resp, err := http.Get(base + "/healthz"); err == nil {
				resp.Body.Close()
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatal("the local stack did not start")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	api := func(method, path, body string, out any) int {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer dev-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	type job struct {
		ID, Status string
		Progress   *struct{ Step int }
		Error      *struct{ Code, Message string }
	}
	wait := func(limit time.Duration, what string, ok func() bool) {
		deadline := time.Now().Add(limit)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	stack := start()
	sample, _ := os.ReadFile("../../testdata/datasets/sample.jsonl")
	var created struct {
		Dataset struct{ ID string }
		Upload  struct{ Request struct{ URL string } }
	}
	api("POST", "/v1/datasets", fmt.Sprintf(`{"name":"s","size_bytes":%d}`, len(sample)), &created)
	req, _ := http.NewRequest("PUT", created.Upload.Request.URL, bytes.NewReader(sample))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload: %v", err)
	}
	wait(20*time.Second, "the dataset to be ready", func() bool {
		var d struct{ Status string }
		api("GET", "/v1/datasets/"+created.Dataset.ID, "", &d)
		return d.Status == "ready"
	})
	var j job
	api("POST", "/v1/jobs", fmt.Sprintf(`{"dataset_id":%q,"preset":"fast","hyperparameters":{"batch_size":1,"gradient_accumulation":1}}`, created.Dataset.ID), &j)
	wait(30*time.Second, "training to make progress", func() bool {
		api("GET", "/v1/jobs/"+j.ID, "", &j)
		return j.Progress != nil && j.Progress.Step >= 2
	})
	var before struct{ Metrics []any }
	api("GET", "/v1/jobs/"+j.ID+"/metrics", "", &before)

	if err := stack.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	stack.Wait()
	start()

	var d struct{ Status string }
	if status := api("GET", "/v1/datasets/"+created.Dataset.ID, "", &d); status != 200 || d.Status != "ready" {
		t.Errorf("after SIGKILL and restart the dataset is %d %q, want it ready", status, d.Status)
	}
	var after struct{ Metrics []any }
	api("GET", "/v1/jobs/"+j.ID+"/metrics", "", &after)
	if len(after.Metrics) < len(before.Metrics) {
		t.Errorf("metric points after the restart: %d, before: %d; want none lost", len(after.Metrics), len(before.Metrics))
	}
	wait(30*time.Second, "reconciliation to end the orphaned job", func() bool {
		api("GET", "/v1/jobs/"+j.ID, "", &j)
		return j.Status == "failed" || j.Status == "completed" || j.Status == "cancelled"
	})
	if j.Status != "failed" || j.Error == nil || j.Error.Code != "result_lost" {
		t.Errorf("the job whose run died with the stack ended %s %+v, want failed result_lost", j.Status, j.Error)
	}
}
