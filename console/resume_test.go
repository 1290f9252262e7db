package console_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// A multipart upload cut off by a failed part resumes after a reload when
// the user picks the same file again: the same dataset, only the parts not
// yet sent, then validation.
func TestAnInterruptedMultipartUploadResumesAfterAReload(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser test")
	}
	exe := chrome(t)
	axe, err := os.ReadFile(filepath.Join("..", "tools", "console", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		missing(t, "axe-core (tools/console/node_modules)")
	}
	stack, err := localstack.Open(localstack.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token",
		API: httpapi.Config{MultipartThreshold: 1 << 20, PartSize: pipeline.MinPartSize},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := stack.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close(context.Background()) })

	// A valid file of two parts: the sample's conversations, numbered so
	// that none is a duplicate, past one part's 5 MiB.
	big := filepath.Join(t.TempDir(), "big.jsonl")
	writeBigDataset(t, big, pipeline.MinPartSize+pipeline.MinPartSize/2)

	shots := t.TempDir()
	j := startBrowser(t, exe, string(axe), stack.URL(), shots, t.TempDir())
	j.run(chromedp.Navigate(j.url+"/"), chromedp.WaitVisible(`#token`, chromedp.ByID), chromedp.SendKeys(`#token`, "dev-token"+kb.Enter))
	j.waitFor(`document.querySelector('main h1')?.textContent === 'Datasets'`, "the datasets page")

	// The second part fails as a dropped connection would.
	chromedp.ListenTarget(j.ctx, func(ev any) {
		if e, ok := ev.(*fetch.EventRequestPaused); ok {
			go chromedp.Run(j.ctx, fetch.FailRequest(e.RequestID, network.ErrorReasonConnectionReset))
		}
	})
	j.run(fetch.Enable().WithPatterns([]*fetch.RequestPattern{{URLPattern: "*part=2*"}}))
	j.run(chromedp.SetUploadFiles(`input[type=file]`, []string{big}, chromedp.ByQuery))
	j.waitFor(`document.querySelector('.upload-status [role=alert]')?.textContent.includes('pick the file again')`, "the upload interrupted, with how to resume")
	j.run(fetch.Disable())

	j.run(chromedp.Reload())
	j.waitFor(`document.querySelector('main h1')?.textContent === 'Datasets'`, "the datasets page after the reload, still signed in")
	// The resumed upload of one part is quick: the page says it resumes
	// for a moment only, so a MutationObserver keeps what it said.
	var ok bool
	j.eval(`(function(){
		window.__resumed = false;
		new MutationObserver(() => {
			if (document.querySelector('.upload-status')?.textContent.includes('Resuming: 2 parts')) window.__resumed = true;
		}).observe(document.body, {subtree: true, childList: true, characterData: true});
		return true;
	})()`, &ok)
	j.run(chromedp.SetUploadFiles(`input[type=file]`, []string{big}, chromedp.ByQuery))
	j.waitFor(`/^#\/datasets\/ds_/.test(location.hash)`, "the dataset's page once the upload completed")
	j.eval(`window.__resumed`, &ok)
	if !ok {
		t.Error("the second upload never said it resumed the plan of two parts")
	}
	j.waitFor(`['validating', 'ready'].includes(document.querySelector('main .status')?.textContent)`, "the resumed upload validating")

	req, _ := http.NewRequest("GET", stack.URL()+"/v1/datasets", nil)
	req.Header.Set("Authorization", "Bearer dev-token")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list struct {
		Datasets []struct{ ID, Status string }
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Datasets) != 1 {
		t.Errorf("%d datasets after the resumed upload, want 1 (the resume reuses the first one's plan)", len(list.Datasets))
	}
}

func writeBigDataset(t *testing.T, path string, size int) {
	t.Helper()
	sample, err := os.ReadFile("../testdata/datasets/sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(sample))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			lines = append(lines, append([]byte(nil), l...))
		}
	}
	var b bytes.Buffer
	for i := 0; b.Len() < size; i++ {
		var conv struct {
			Messages []map[string]any `json:"messages"`
		}
		if err := json.Unmarshal(lines[i%len(lines)], &conv); err != nil {
			t.Fatal(err)
		}
		for _, m := range conv.Messages {
			if m["role"] == "user" {
				m["content"] = fmt.Sprintf("(%d) %v", i, m["content"])
				break
			}
		}
		line, _ := json.Marshal(conv)
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
