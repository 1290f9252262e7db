package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/api"
)

// A job run on the RunPod emulator stores a checkpoint at its epoch's end:
// download --checkpoint fetches its files, checked, and names what it got.
func TestDownloadACheckpoint(t *testing.T) {
	id := readySample(t)
	var job api.JobView
	decode(t, cli(t, "jobs", "create", id, "--name", "checkpointed", "--json"), &job)
	if r := cli(t, "jobs", "watch", job.ID, "--interval", "500ms"); r.code != 0 {
		t.Fatalf("watch: want the job completed\n%s", r)
	}

	dir := filepath.Join(t.TempDir(), "ckpt")
	var files []downloadedFile
	r := cli(t, "jobs", "download", job.ID, dir, "--checkpoint", "latest", "--json")
	decode(t, r, &files)
	names := map[string]bool{}
	for _, f := range files {
		names[filepath.Base(f.Path)] = true
		if sum, size := sha256File(t, f.Path); sum != f.SHA256 || size != f.SizeBytes || f.Status != "downloaded" {
			t.Errorf("%s: %d bytes sha256 %s status %s, want %d bytes %s downloaded", f.Path, size, sum, f.Status, f.SizeBytes, f.SHA256)
		}
	}
	for _, want := range []string{"adapter_config.json", "adapter_model.safetensors", "training_state.safetensors", "trainer_state.json"} {
		if !names[want] {
			t.Errorf("the checkpoint's files = %v, want %s among them\n%s", names, want, r)
		}
	}

	t.Run("by step, into the default folder, with a summary", func(t *testing.T) {
		var arts api.ArtifactList
		if err := getJSON(stack.URL()+"/v1/jobs/"+job.ID+"/artifacts", &arts); err != nil || len(arts.Checkpoints) == 0 {
			t.Fatalf("artifacts = %+v, %v; want a checkpoint", arts, err)
		}
		step := arts.Checkpoints[len(arts.Checkpoints)-1].Step
		t.Chdir(t.TempDir())
		r := cli(t, "jobs", "download", job.ID, "--checkpoint", itoa(step))
		if r.code != 0 || !strings.Contains(r.stdout, "checkpoint") || !strings.Contains(r.stdout, filepath.Join(job.ID, "checkpoint-"+itoa(step))) {
			t.Errorf("download --checkpoint %d: want exit 0 and the folder %s/checkpoint-%d named\n%s", step, job.ID, step, r)
		}
	})
	t.Run("a checkpoint the job does not have exits 1 and lists those it has", func(t *testing.T) {
		r := cli(t, "jobs", "download", job.ID, t.TempDir(), "--checkpoint", "ck_999999_9")
		if r.code != 1 || !strings.Contains(r.stderr, "has no checkpoint") || !strings.Contains(r.stderr, "latest") {
			t.Errorf("want exit 1 and the list\n%s", r)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// getJSON GETs an API route with the test token and decodes its body.
func getJSON(url string, v any) error {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer dev-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s = %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// jobs delete removes an ended job; a running one is refused with the
// server's reason.
func TestDeleteAJob(t *testing.T) {
	id := readySample(t)
	var stuck api.JobView
	decode(t, cli(t, "jobs", "create", id, "--set", "lora_dropout="+dropoutStuck, "--json"), &stuck)
	var done api.JobView
	decode(t, cli(t, "jobs", "create", id, "--name", "to delete", "--json"), &done)
	if r := cli(t, "jobs", "watch", done.ID, "--interval", "500ms"); r.code != 0 {
		t.Fatalf("watch: want the job completed\n%s", r)
	}
	r := cli(t, "jobs", "delete", done.ID)
	if r.code != 0 || !strings.Contains(r.stdout, "deleted "+done.ID) {
		t.Fatalf("jobs delete of a completed job: want exit 0\n%s", r)
	}
	if r := cli(t, "jobs", "show", done.ID); r.code == 0 {
		t.Errorf("jobs show after delete: want a failure (not found)\n%s", r)
	}
	waitStatus := func() string {
		var j api.JobView
		_ = getJSON(stack.URL()+"/v1/jobs/"+stuck.ID, &j)
		return string(j.Status)
	}
	if st := waitStatus(); st == "completed" || st == "failed" || st == "cancelled" {
		t.Fatalf("the stuck job is %s, want it still running", st)
	}
	r = cli(t, "jobs", "delete", stuck.ID)
	if r.code != exitAPI || !strings.Contains(r.stderr, "cancel it") {
		t.Errorf("jobs delete of a job that has not ended: want the API's exit status %d and the reason\n%s", exitAPI, r)
	}
	cli(t, "jobs", "cancel", stuck.ID)
}
