package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/runpodemu"
)

// missing skips, or fails with BRIGHTRUN_REQUIRE_TOOLS=1 (.ci/run), when a
// tool the browser test needs is not installed.
func missing(t *testing.T, what string) {
	t.Helper()
	msg := what + " is not installed (tools/setup.sh installs it): the browser test cannot run"
	if os.Getenv("BRIGHTRUN_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// chrome finds the browser: BRIGHTRUN_CHROME, or Chromium on PATH.
func chrome(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BRIGHTRUN_CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	missing(t, "Chromium (Debian's chromium package)")
	return ""
}

// journey is one browser session against a local stack, with the helpers
// the steps share.
type journey struct {
	t        *testing.T
	ctx      context.Context
	url      string
	shots    string
	axe      string
	shotN    int
	problems []string // console errors and uncaught exceptions
	mu       sync.Mutex
}

// A domain expert goes from a chat file to a trained adapter without a
// terminal: sign in, upload (and read an invalid file's report), configure
// with a preset and an override while the estimate follows, train, watch
// the loss curve grow, download the adapter (sha256 checked), cancel a
// second job mid-run, read the notifications; axe-core on every page and a
// screenshot of each.
func TestADomainExpertTrainsAnAdapterInTheBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser journey takes a minute")
	}
	exe := chrome(t)
	axePath := filepath.Join("..", "tools", "console", "node_modules", "axe-core", "axe.min.js")
	axe, err := os.ReadFile(axePath)
	if err != nil {
		missing(t, "axe-core (tools/console/node_modules)")
	}
	started := time.Now()

	// The stack: uploads from 10 KB are multipart (the sample is, the
	// invalid file is not), training at 1 step a second so that the curve
	// grows in front of the test and a job can be cancelled mid-run.
	stack, err := localstack.Open(localstack.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token",
		API:      httpapi.Config{MultipartThreshold: 10_000},
		Emulator: runpodemu.Config{StepsPerSecond: 1},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := stack.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close(context.Background()) })

	shots := os.Getenv("BRIGHTRUN_SCREENSHOTS")
	if shots == "" {
		shots = "screenshots"
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	// This run's screenshots only: those of an earlier run go.
	old, _ := filepath.Glob(filepath.Join(shots, "*.png"))
	for _, f := range old {
		os.Remove(f)
	}
	downloads := t.TempDir()

	j := startBrowser(t, exe, string(axe), stack.URL(), shots, downloads)

	// Sign in, with the keyboard alone: the token field has the focus.
	j.run(chromedp.Navigate(j.url + "/"))
	j.waitFor(`document.activeElement && document.activeElement.id === 'token'`, "the sign-in form, its token field focused")
	j.page("signin")
	j.run(chromedp.SendKeys(`#token`, "wrong-token"+kb.Enter))
	j.waitFor(`document.getElementById('token-error').textContent.includes('not accepted')`, "a wrong token refused, next to the field")
	j.run(clear(`#token`), chromedp.SendKeys(`#token`, "dev-token"+kb.Enter))
	j.waitFor(`document.querySelector('main h1')?.textContent === 'Datasets' && !!document.querySelector('#dataset-list .state.empty')`, "the datasets page, empty")
	j.page("datasets-empty")

	// The sample: checked, uploaded (multipart, one part) with a progress
	// bar that reaches 100 %, then validated.
	j.recordProgress()
	sample := abs(t, "../testdata/datasets/sample.jsonl")
	j.run(chromedp.SetUploadFiles(`input[type=file]`, []string{sample}, chromedp.ByQuery))
	j.waitFor(`/^#\/datasets\/ds_/.test(location.hash)`, "the sample's dataset page after its upload")
	var progress struct {
		Max, Value float64
		Text       string
	}
	j.eval(`window.__progress`, &progress)
	if progress.Max == 0 || progress.Value != progress.Max || !strings.HasPrefix(progress.Text, "100 %") {
		t.Fatalf("the upload's progress bar ended at %v of %v (%q), want complete at 100 %%", progress.Value, progress.Max, progress.Text)
	}
	sampleID := strings.TrimPrefix(j.text(`location.hash`), "#/datasets/")
	j.waitFor(`document.querySelector('main .status')?.textContent === 'ready'`, "the sample validated: ready")
	facts := j.text(`document.querySelector('.facts').innerText`)
	for _, want := range []string{"40", "4,432", "2,588"} {
		if !strings.Contains(facts, want) {
			t.Errorf("the sample's statistics %q lack %s", facts, want)
		}
	}
	j.page("dataset-ready")

	// The invalid file: the browser's check stops it first, then its
	// upload's report lists every line with its code and message.
	j.run(chromedp.Navigate(j.url + "/#/datasets"))
	j.waitFor(`!!document.querySelector('input[type=file]')`, "the datasets page")
	j.run(chromedp.SetUploadFiles(`input[type=file]`, []string{abs(t, "../testdata/datasets/bad.jsonl")}, chromedp.ByQuery))
	j.waitFor(`document.querySelector('.upload-status [role=alert]')?.textContent.includes('not JSON')`, "the browser's check naming a line that is not JSON")
	j.page("upload-check")
	j.run(chromedp.Click(`//button[contains(., 'Upload anyway')]`, chromedp.BySearch))
	j.waitFor(`document.querySelector('main .status')?.textContent === 'invalid' && document.querySelectorAll('table.report tbody tr').length > 0`, "the invalid dataset's report")
	report := j.text(`document.querySelector('table.report').innerText`)
	for _, want := range []string{"invalid_json", "missing_messages", "invalid JSON at byte"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
	if counts := j.text(`document.querySelector('table.counts').innerText`); !strings.Contains(counts, "invalid_json") {
		t.Errorf("the per-code counts lack invalid_json:\n%s", counts)
	}
	j.page("dataset-invalid")

	// A ShareGPT file: the browser's check follows the chosen format and
	// says which one the file looks like.
	sharegpt := abs(t, "../testdata/datasets/sample.sharegpt.jsonl")
	j.run(chromedp.Navigate(j.url + "/#/datasets"))
	j.waitFor(`!!document.getElementById('f-format')`, "the upload's format choice")
	j.run(chromedp.SetUploadFiles(`input[type=file]`, []string{sharegpt}, chromedp.ByQuery))
	j.waitFor(`document.querySelector('.upload-status [role=alert]')?.textContent.includes('It looks like ShareGPT: choose that format')`, "the check naming the file's format")
	j.run(chromedp.Evaluate(`(() => { const s = document.getElementById('f-format'); s.value = 'sharegpt'; s.dispatchEvent(new Event('change')); })()`, nil))
	j.run(chromedp.SetUploadFiles(`input[type=file]`, []string{sharegpt}, chromedp.ByQuery))
	j.waitFor(`/^#\/datasets\/ds_/.test(location.hash) && document.querySelector('main .status')?.textContent === 'ready'`, "the ShareGPT dataset ready")
	if facts := j.text(`document.querySelector('.facts').innerText`); !strings.Contains(facts, "ShareGPT") || !strings.Contains(facts, "40") {
		t.Errorf("the ShareGPT dataset's facts %q lack its format or its 40 examples", facts)
	}
	j.run(chromedp.Navigate(j.url + "/#/datasets"))
	j.waitFor(`document.querySelectorAll('#dataset-list tbody tr').length === 3`, "the three datasets listed")
	j.page("datasets")

	// Import from a link: the server copies a file served on this machine
	// (the local stack allows loopback), then validates it. A link the
	// server refuses says why, next to the field.
	files := httptest.NewServer(http.StripPrefix("/exports/", http.FileServer(http.Dir(filepath.Dir(sample)))))
	defer files.Close()
	j.run(chromedp.SendKeys(`form.import input[name=source]`, "ftp://example.com/chats.jsonl", chromedp.ByQuery),
		chromedp.Click(`form.import button[type=submit]`, chromedp.ByQuery))
	j.waitFor(`document.querySelector('.import-status [role=alert]')?.textContent.includes('https')`, "a refused link's reason next to the field")
	j.page("import-refused")
	j.run(clear(`form.import input[name=source]`),
		chromedp.SendKeys(`form.import input[name=source]`, files.URL+"/exports/sample.jsonl", chromedp.ByQuery),
		chromedp.Click(`form.import button[type=submit]`, chromedp.ByQuery))
	j.waitFor(`/^#\/datasets\/ds_/.test(location.hash) && document.querySelector('main .status')?.textContent === 'ready'`, "the imported dataset ready")
	if facts := j.text(`document.querySelector('.facts').innerText`); !strings.Contains(facts, "Imported from") || !strings.Contains(facts, "/exports/sample.jsonl") {
		t.Errorf("the imported dataset's facts %q lack where it came from", facts)
	}
	j.page("dataset-imported")
	importedID := strings.TrimPrefix(j.text(`location.hash`), "#/datasets/")
	req, _ := http.NewRequest(http.MethodDelete, stack.URL()+"/v1/datasets/"+importedID, nil)
	req.Header.Set("Authorization", "Bearer dev-token")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE the imported dataset = %v %v, want 204", resp, err)
	}

	// Configure: preset fast, then one override; the estimate follows each.
	j.run(chromedp.Navigate(j.url + "/#/configure?dataset=" + sampleID))
	j.waitFor(`document.getElementById('estimate')?.dataset.state === 'current'`, "the first estimate")
	v0 := j.estimateVersion()
	before := j.text(`document.querySelector('#estimate-body').innerText`)
	j.run(chromedp.Click(`#f-preset-fast`, chromedp.ByQuery))
	j.waitEstimate(v0, "after choosing the fast preset")
	v1 := j.estimateVersion()
	fast := j.text(`document.querySelector('#estimate-body').innerText`)
	if fast == before {
		t.Errorf("the estimate did not change with the preset:\n%s", fast)
	}
	// Out of bounds: explained by the field, no estimate until fixed.
	j.run(clear(`#f-epochs`), chromedp.SendKeys(`#f-epochs`, "99"))
	j.waitFor(`document.getElementById('f-epochs-err').textContent.includes('between 1 and 20') && document.getElementById('estimate').dataset.state === 'invalid'`, "epochs 99 explained next to its field")
	j.page("configure-out-of-bounds")
	j.run(clear(`#f-epochs`), chromedp.SendKeys(`#f-epochs`, "1"))
	j.waitEstimate(v1, "after fixing epochs")
	v2 := j.estimateVersion()
	// The override: one example per step, twenty steps. (The time to the
	// new estimate is logged, not asserted: this machine may be busy.)
	typed := time.Now()
	j.run(clear(`#f-batch_size`), chromedp.SendKeys(`#f-batch_size`, "1"))
	j.waitEstimate(v2, "after overriding the batch size")
	t.Logf("the estimate followed the override in %s (300 ms of it waiting for more typing; polled every 150 ms)", time.Since(typed).Round(10*time.Millisecond))
	steps := j.text(`document.querySelector('#estimate-body tbody tr td.num').textContent`)
	if steps != "20" {
		t.Errorf("with batch size 1 the estimate shows %s steps, want 20", steps)
	}
	// An evaluation share: the estimate names what it holds out.
	v3 := j.estimateVersion()
	j.run(chromedp.SendKeys(`#f-split`, "0.2"))
	j.waitEstimate(v3, "after holding out 0.2 for evaluation")
	if ev := j.text(`document.getElementById('evaluation').textContent`); !strings.Contains(ev, "8 examples held out (32 train)") {
		t.Errorf("with 0.2 held out the estimate says %q, want 8 of the 40 examples held out", ev)
	}
	for _, mark := range []string{"cheapest", "fastest"} {
		if n := j.text(fmt.Sprintf(`String(document.querySelectorAll('#estimate-body .mark.%s').length)`, mark)); n != "1" {
			t.Errorf("%s GPUs marked in the estimate, want 1 %s", n, mark)
		}
	}
	j.page("configure")

	jobID := j.createJob("first")
	j.waitFor(`+document.getElementById('loss-chart').dataset.points >= 1 && !document.querySelector('.status-completed')`, "the first loss point while the job runs")
	firstPoints := j.points()
	j.page("job-running")
	j.waitFor(`!!document.querySelector('#job-summary .status-completed') && !!document.querySelector('#artifacts a[download]')`, "the job completed with its adapter's files")
	if last := j.points(); last <= firstPoints || last < 3 {
		t.Errorf("the loss curve had %d points while running and %d at the end: it did not grow", firstPoints, last)
	}
	if n := j.text(`String(document.querySelectorAll('#loss-chart canvas').length)`); n == "0" {
		t.Error("the loss curve has no uPlot canvas")
	}
	if n := j.text(`document.getElementById('loss-chart').dataset.evalPoints`); n == "0" || n == "" {
		t.Errorf("the loss curve shows %q evaluation loss points for a job holding out 20 %%, want some", n)
	}
	j.page("job-completed")

	// The adapter: downloaded through its link, its sha256 the one shown.
	var want string
	j.eval(`document.querySelector('#artifacts a[download="adapter_model.safetensors"]').dataset.sha256`, &want)
	shown := j.text(`document.querySelector('#artifacts a[download="adapter_model.safetensors"]').closest('tr').querySelector('code').textContent`)
	if shown != want {
		t.Errorf("the page shows sha256 %s, the link carries %s", shown, want)
	}
	j.run(chromedp.Click(`#artifacts a[download="adapter_model.safetensors"]`, chromedp.ByQuery))
	got := waitDownload(t, j.ctx, filepath.Join(downloads, "adapter_model.safetensors"))
	if got != want {
		t.Errorf("the downloaded adapter's sha256 = %s, want %s", got, want)
	}

	// A second job, cancelled mid-run.
	j.run(chromedp.Navigate(j.url + "/#/configure?dataset=" + sampleID))
	j.waitFor(`document.getElementById('estimate')?.dataset.state === 'current'`, "the estimate for the second job")
	v := j.estimateVersion()
	j.run(chromedp.Click(`#f-preset-fast`, chromedp.ByQuery))
	j.waitEstimate(v, "after choosing the fast preset again")
	v = j.estimateVersion()
	j.run(clear(`#f-batch_size`), chromedp.SendKeys(`#f-batch_size`, "1"))
	j.waitEstimate(v, "after the override again")
	v = j.estimateVersion()
	j.run(clear(`#f-epochs`), chromedp.SendKeys(`#f-epochs`, "3"))
	j.waitEstimate(v, "after three epochs (sixty steps: time to act while it runs)")
	second := j.createJob("second")
	if second == jobID {
		t.Fatalf("the second job has the first one's id %s", jobID)
	}
	j.waitFor(`+document.getElementById('loss-chart').dataset.points >= 1 && !!document.getElementById('cancel-job')`, "the second job training")

	// Its dataset cannot go while it trains: the server's reason is shown.
	j.run(chromedp.Navigate(j.url + "/#/datasets/" + sampleID))
	j.waitFor(`!!document.querySelector('button.danger')`, "the sample's page with its delete button")
	j.run(chromedp.Click(`button.danger`, chromedp.ByQuery))
	j.waitFor(`!!document.querySelector('dialog[open]')`, "the delete confirmation")
	j.page("dataset-delete-confirm")
	j.run(chromedp.Click(`//dialog[@open]//button[contains(., 'Delete the dataset')]`, chromedp.BySearch))
	j.waitFor(`document.querySelector('main [role=alert]')?.textContent.includes('is used by job `+second+`')`, "the refusal naming the job that uses the dataset")
	j.page("dataset-delete-refused")
	j.run(chromedp.Navigate(j.url + "/#/jobs/" + second))
	j.waitFor(`!!document.getElementById('cancel-job')`, "the second job's page again")
	// With the keyboard alone: Enter opens the confirmation, Escape keeps
	// the job (focus back on the button), Enter again, Tab to the
	// confirming button, Enter.
	j.run(chromedp.Focus(`#cancel-job`, chromedp.ByQuery), chromedp.KeyEvent(kb.Enter))
	j.waitFor(`!!document.querySelector('dialog[open]') && document.activeElement.closest('dialog') !== null`, "the cancel confirmation, focused")
	j.page("job-cancel-confirm")
	j.run(chromedp.KeyEvent(kb.Escape))
	j.waitFor(`!document.querySelector('dialog') && document.activeElement?.id === 'cancel-job'`, "Escape closing the confirmation, focus back on Cancel")
	j.run(chromedp.KeyEvent(kb.Enter))
	j.waitFor(`document.activeElement?.textContent === 'Keep it as it is'`, "the confirmation again, its safe choice focused first")
	j.run(chromedp.KeyEvent(kb.Tab))
	j.waitFor(`document.activeElement?.textContent === 'Cancel the job'`, "Tab reaching the confirming button")
	j.run(chromedp.KeyEvent(kb.Enter))
	j.waitFor(`!!document.querySelector('#job-summary .status-cancelled')`, "the second job cancelled")
	if status := j.text(`document.querySelector('#job-summary .progress-text')?.textContent || ''`); strings.Contains(status, "step 60 of 60") {
		t.Errorf("the cancelled job shows %q: it ran to the end", status)
	}
	j.page("job-cancelled")

	// The jobs list, then the notification of the completed job.
	j.run(chromedp.Navigate(j.url + "/#/jobs"))
	j.waitFor(`document.querySelectorAll('#job-list tbody tr').length === 2`, "two jobs listed (one per confirmed creation)")
	j.page("jobs")
	j.waitFor(`!document.getElementById('badge').hidden && document.getElementById('badge').textContent.includes('new')`, "the notifications badge")
	j.run(chromedp.Click(`a[data-section=notifications]`, chromedp.ByQuery))
	j.waitFor(`document.querySelector('.notifications')?.innerText.includes('completed')`, "the completed job's notification")
	j.waitFor(`document.getElementById('badge').hidden`, "the badge cleared once seen")
	j.page("notifications")

	// The invalid dataset goes, once confirmed.
	j.run(chromedp.Navigate(j.url + "/#/datasets"))
	j.waitFor(`document.querySelectorAll('#dataset-list tbody tr').length === 3`, "the three datasets listed")
	j.run(chromedp.Click(`//table//a[text()='bad.jsonl']`, chromedp.BySearch))
	j.waitFor(`!!document.querySelector('button.danger')`, "the invalid dataset's delete button")
	j.run(chromedp.Click(`button.danger`, chromedp.ByQuery))
	j.waitFor(`!!document.querySelector('dialog[open]')`, "the delete confirmation")
	j.run(chromedp.Click(`//dialog[@open]//button[contains(., 'Delete the dataset')]`, chromedp.BySearch))
	j.waitFor(`location.hash === '#/datasets' && document.querySelectorAll('#dataset-list tbody tr').length === 2`, "the list without the deleted dataset")

	j.mu.Lock()
	for _, p := range j.problems {
		t.Errorf("the page reported: %s", p)
	}
	j.mu.Unlock()
	t.Logf("browser journey: %s (screenshots in %s)", time.Since(started).Round(time.Second), shots)
}

// startBrowser starts headless Chromium for a journey at url: screenshots
// go to shots, downloads to downloads; console errors and uncaught
// exceptions are kept as problems.
func startBrowser(t *testing.T, exe, axe, url, shots, downloads string) *journey {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	// chromedp logs CDP events it does not model (the dialog's top layer):
	// noise, not failures.
	quiet := func(string, ...any) {}
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(quiet), chromedp.WithLogf(quiet))
	t.Cleanup(cancelBrowser)
	ctx, cancel := context.WithTimeout(bctx, 6*time.Minute)
	t.Cleanup(cancel)

	j := &journey{t: t, ctx: ctx, url: url, shots: shots, axe: axe}
	chromedp.ListenTarget(ctx, func(ev any) {
		j.mu.Lock()
		defer j.mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			j.problems = append(j.problems, "uncaught: "+e.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				j.problems = append(j.problems, "console.error: "+strings.Join(parts, " "))
			}
		case *log.EventEntryAdded:
			// The API's 4xx answers are the console's to explain (a wrong
			// token, for one): the browser logs them all the same.
			if e.Entry.Level == log.LevelError && !strings.Contains(e.Entry.Text, "the server responded with a status of 4") {
				j.problems = append(j.problems, "browser log: "+e.Entry.Text+" "+e.Entry.URL)
			}
		}
	})
	j.run(log.Enable(), chromedp.ActionFunc(func(ctx context.Context) error {
		return browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllow).WithDownloadPath(downloads).Do(ctx)
	}))

	return j
}

// run runs actions, failing the test with a screenshot on error.
func (j *journey) run(actions ...chromedp.Action) {
	j.t.Helper()
	if err := chromedp.Run(j.ctx, actions...); err != nil {
		j.fail("%v", err)
	}
}

func (j *journey) fail(format string, args ...any) {
	j.t.Helper()
	var buf []byte
	if err := chromedp.Run(j.ctx, chromedp.FullScreenshot(&buf, 100)); err == nil {
		_ = os.WriteFile(filepath.Join(j.shots, "failure.png"), buf, 0o644)
	}
	var body string
	_ = chromedp.Run(j.ctx, chromedp.Evaluate(`document.querySelector('main')?.innerText || ''`, &body))
	j.mu.Lock()
	problems := strings.Join(j.problems, "\n")
	j.mu.Unlock()
	j.t.Fatalf(format+"\n--- the page (screenshot %s):\n%s\n--- console:\n%s", append(args, filepath.Join(j.shots, "failure.png"), body, problems)...)
}

func (j *journey) eval(expr string, v any) {
	j.t.Helper()
	if err := chromedp.Run(j.ctx, chromedp.Evaluate(expr, v)); err != nil {
		j.fail("evaluate %s: %v", expr, err)
	}
}

func (j *journey) text(expr string) string {
	j.t.Helper()
	var s string
	j.eval(expr, &s)
	return strings.TrimSpace(s)
}

// waitFor waits (generously: the machine may be busy) until expr is true.
func (j *journey) waitFor(expr, what string) {
	j.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var ok bool
		if err := chromedp.Run(j.ctx, chromedp.Evaluate(`!!(function(){ try { return `+expr+` } catch (e) { return false } })()`, &ok)); err != nil {
			j.fail("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			j.fail("never saw %s", what)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

func (j *journey) estimateVersion() int {
	j.t.Helper()
	n, _ := strconv.Atoi(j.text(`document.getElementById('estimate').dataset.version`))
	return n
}

// waitEstimate waits for an estimate newer than version: the test fails
// when the estimate stops following the form.
func (j *journey) waitEstimate(version int, what string) {
	j.t.Helper()
	j.waitFor(fmt.Sprintf(`+document.getElementById('estimate').dataset.version > %d && document.getElementById('estimate').dataset.state === 'current'`, version), "the estimate updated "+what)
}

func (j *journey) points() int {
	j.t.Helper()
	n, _ := strconv.Atoi(j.text(`document.getElementById('loss-chart').dataset.points`))
	return n
}

// createJob confirms the form and returns the job page's id.
func (j *journey) createJob(name string) string {
	j.t.Helper()
	j.run(chromedp.SendKeys(`#f-name`, name), chromedp.Click(`#create-job`, chromedp.ByQuery))
	j.waitFor(`!!document.querySelector('dialog[open]')`, "the confirmation of what the job may spend")
	if dialog := j.text(`document.querySelector('dialog[open]').innerText`); !strings.Contains(dialog, "At most") {
		j.t.Errorf("the confirmation does not say what the job spends at most:\n%s", dialog)
	}
	if name == "first" {
		j.page("job-confirm")
	}
	j.run(chromedp.Click(`//dialog[@open]//button[contains(., 'Start training')]`, chromedp.BySearch))
	j.waitFor(`/^#\/jobs\/job_/.test(location.hash)`, "the new job's page")
	return strings.TrimPrefix(j.text(`location.hash`), "#/jobs/")
}

// recordProgress keeps the furthest the upload's progress bar went.
func (j *journey) recordProgress() {
	j.t.Helper()
	var ok bool
	j.eval(`(function(){
		window.__progress = {max: 0, value: 0, text: ''};
		new MutationObserver(() => {
			const bar = document.querySelector('.upload-status progress');
			if (!bar) return;
			if (bar.value >= window.__progress.value) window.__progress = {max: bar.max, value: bar.value, text: bar.parentElement.textContent};
		}).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
		return true;
	})()`, &ok)
}

type violation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// page runs axe-core on the page as it is (failing on a serious or critical
// violation) and saves its screenshot.
func (j *journey) page(name string) {
	j.t.Helper()
	var injected bool
	j.eval(`typeof axe !== 'undefined'`, &injected)
	if !injected {
		var ok bool
		j.eval(j.axe+";true", &ok)
	}
	var out string
	err := chromedp.Run(j.ctx, chromedp.Evaluate(`axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))))`, &out,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
	if err != nil {
		j.fail("axe-core on %s: %v", name, err)
	}
	var vs []violation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		j.fail("axe-core's answer on %s: %v", name, err)
	}
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			j.t.Errorf("axe-core on the %s page: %s (%s): %s at %v", name, v.ID, v.Impact, v.Help, v.Nodes)
		} else {
			j.t.Logf("axe-core on the %s page, %s: %s (%s) at %v", name, v.Impact, v.ID, v.Help, v.Nodes)
		}
	}
	j.shotN++
	var buf []byte
	j.run(chromedp.FullScreenshot(&buf, 100))
	if err := os.WriteFile(filepath.Join(j.shots, fmt.Sprintf("%02d-%s.png", j.shotN, name)), buf, 0o644); err != nil {
		j.t.Fatal(err)
	}
}

// clear empties a field, as select-all then delete would.
func clear(sel string) chromedp.Action {
	return chromedp.Evaluate(`document.querySelector('`+sel+`').value = ''`, nil)
}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitDownload waits for the browser to finish writing path and returns
// its sha256.
func waitDownload(t *testing.T, ctx context.Context, path string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(path + ".crdownload"); err != nil {
			if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
				sum := sha256.Sum256(b)
				return hex.EncodeToString(sum[:])
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("the download of %s never finished", filepath.Base(path))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
