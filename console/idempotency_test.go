package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/brightrun/brightrun/shared/localstack"
)

// A job creation whose answer is lost (the API created the job, the
// browser saw a dropped connection) and is sent again by the user makes
// one job: the retry carries the same Idempotency-Key and gets the first
// answer.
func TestAJobCreationSentTwiceMakesOneJob(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser test")
	}
	exe := chrome(t)
	axe, err := os.ReadFile(filepath.Join("..", "tools", "console", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		missing(t, "axe-core (tools/console/node_modules)")
	}
	stack, err := localstack.Open(localstack.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := stack.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close(context.Background()) })
	datasetID := readyDataset(t, stack.URL(), "../testdata/datasets/sample.jsonl")

	j := startBrowser(t, exe, string(axe), stack.URL(), t.TempDir(), t.TempDir())
	j.run(chromedp.Navigate(j.url+"/"), chromedp.WaitVisible(`#token`, chromedp.ByID), chromedp.SendKeys(`#token`, "dev-token"+kb.Enter))
	j.waitFor(`document.querySelector('main h1')?.textContent === 'Datasets'`, "the datasets page")
	j.run(chromedp.Navigate(j.url + "/#/configure?dataset=" + datasetID))
	j.waitFor(`document.getElementById('estimate')?.dataset.state === 'current'`, "the estimate")

	// The first POST /v1/jobs reaches the API; its answer is dropped.
	var dropped atomic.Int32
	chromedp.ListenTarget(j.ctx, func(ev any) {
		e, ok := ev.(*fetch.EventRequestPaused)
		if !ok {
			return
		}
		if e.Request.Method == http.MethodPost && e.ResponseStatusCode != 0 && dropped.Add(1) == 1 {
			go chromedp.Run(j.ctx, fetch.FailRequest(e.RequestID, network.ErrorReasonConnectionReset))
			return
		}
		go chromedp.Run(j.ctx, fetch.ContinueRequest(e.RequestID))
	})
	j.run(fetch.Enable().WithPatterns([]*fetch.RequestPattern{{URLPattern: "*/v1/jobs", RequestStage: fetch.RequestStageResponse}}))
	start := func() {
		j.run(chromedp.Click(`#create-job`, chromedp.ByQuery))
		j.waitFor(`!!document.querySelector('dialog[open]')`, "the confirmation")
		j.run(chromedp.Click(`//dialog[@open]//button[contains(., 'Start training')]`, chromedp.BySearch))
	}
	start()
	j.waitFor(`document.querySelector('form.configure [role=alert]')?.textContent.includes('The job was not created')`, "the lost answer reported, with what to do")
	if n := countJobs(t, stack.URL()); n != 1 {
		t.Fatalf("%d jobs after the first request, want 1 (its answer only was lost)", n)
	}
	start()
	j.waitFor(`/^#\/jobs\/job_/.test(location.hash)`, "the job's page after sending again")
	if n := countJobs(t, stack.URL()); n != 1 {
		t.Errorf("%d jobs after sending the same request twice, want 1", n)
	}
}

func api(t *testing.T, method, url string, body any) *http.Response {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Authorization", "Bearer dev-token")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func countJobs(t *testing.T, base string) int {
	t.Helper()
	res := api(t, "GET", base+"/v1/jobs", nil)
	defer res.Body.Close()
	var list struct{ Jobs []json.RawMessage }
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	return len(list.Jobs)
}

// readyDataset uploads path through the API and waits for it to be ready.
func readyDataset(t *testing.T, base, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res := api(t, "POST", base+"/v1/datasets", map[string]any{"name": filepath.Base(path), "size_bytes": len(data)})
	var created struct {
		Dataset struct{ ID string }
		Upload  struct {
			Request struct {
				URL     string
				Headers map[string]string
			}
		}
	}
	err = json.NewDecoder(res.Body).Decode(&created)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("create the dataset: %d %v", res.StatusCode, err)
	}
	put, _ := http.NewRequest("PUT", created.Upload.Request.URL, bytes.NewReader(data))
	for k, v := range created.Upload.Request.Headers {
		if k != "Content-Length" {
			put.Header.Set(k, v)
		}
	}
	if res, err := http.DefaultClient.Do(put); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("upload the dataset: %v %v", res, err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		res := api(t, "GET", base+"/v1/datasets/"+created.Dataset.ID, nil)
		var d struct{ Status string }
		_ = json.NewDecoder(res.Body).Decode(&d)
		res.Body.Close()
		if d.Status == "ready" {
			return created.Dataset.ID
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("the dataset never became ready")
	return ""
}
