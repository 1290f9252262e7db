package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// demo takes the bundled sample dataset through the whole pipeline over the
// HTTP API, as a user would: upload, validation, estimate, job, dispatch,
// emulated training, adapter download. It prints each stage to w.
func demo(ctx context.Context, w io.Writer, base, token, samplePath string) error {
	c := &demoClient{base: base, token: token}
	sample, err := os.ReadFile(samplePath)
	if err != nil {
		return fmt.Errorf("read the sample dataset: %w", err)
	}
	fmt.Fprintf(w, "\ndemo 1/6 upload     %s (%d bytes)\n", samplePath, len(sample))
	var created struct {
		Dataset struct{ ID string }
		Upload  struct {
			Request struct {
				Method, URL string
				Headers     map[string]string
			}
		}
	}
	if err := c.do(ctx, "POST", "/v1/datasets", fmt.Sprintf(`{"name":"demo: sample.jsonl","size_bytes":%d}`, len(sample)), &created); err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, created.Upload.Request.Method, created.Upload.Request.URL, bytes.NewReader(sample))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("upload: HTTP %d", resp.StatusCode)
	}
	id := created.Dataset.ID

	var d struct {
		Status     string
		Error      string
		Validation struct {
			Examples int64
			Tokens   struct{ Total, Trained int64 }
		}
	}
	if err := c.poll(ctx, time.Minute, "/v1/datasets/"+id, &d, func() bool { return d.Status == "ready" || d.Status == "invalid" }); err != nil {
		return err
	}
	fmt.Fprintf(w, "demo 2/6 validate   %s %s: %d examples, %d tokens (%d trained) — exact Qwen3 counts\n",
		id, d.Status, d.Validation.Examples, d.Validation.Tokens.Total, d.Validation.Tokens.Trained)
	if d.Status != "ready" {
		return fmt.Errorf("the sample dataset is %s: %s", d.Status, d.Error)
	}

	body := fmt.Sprintf(`{"dataset_id":%q,"preset":"fast","hyperparameters":{"batch_size":1,"gradient_accumulation":4}}`, id)
	var est struct {
		Estimate struct {
			GPU             string
			Steps           struct{ Total int64 }
			DurationSeconds struct{ Low, Expected, High int64 }   `json:"duration_seconds"`
			CostUSD         struct{ Low, Expected, High float64 } `json:"cost_usd"`
		}
		Comparison struct {
			CheapestGPU string `json:"cheapest_gpu"`
			FastestGPU  string `json:"fastest_gpu"`
		}
	}
	if err := c.do(ctx, "POST", "/v1/estimates", body, &est); err != nil {
		return err
	}
	e := est.Estimate
	fmt.Fprintf(w, "demo 3/6 estimate   %s, %d steps: %s–%s, $%.2f–$%.2f (cheapest %s, fastest %s)\n", e.GPU, e.Steps.Total,
		hours(e.DurationSeconds.Low), hours(e.DurationSeconds.High), e.CostUSD.Low, e.CostUSD.High, est.Comparison.CheapestGPU, est.Comparison.FastestGPU)

	var j struct {
		ID, Status string
		Progress   *struct {
			Step       int
			TotalSteps int `json:"total_steps"`
			Loss       float64
		}
		Error *struct{ Code, Message string }
	}
	if err := c.do(ctx, "POST", "/v1/jobs", body, &j); err != nil {
		return err
	}
	fmt.Fprintf(w, "demo 4/6 job        %s %s\n", j.ID, j.Status)
	last := j.Status
	err = c.poll(ctx, 10*time.Minute, "/v1/jobs/"+j.ID, &j, func() bool {
		if j.Status != last {
			line := "                    → " + j.Status
			if j.Progress != nil {
				line += fmt.Sprintf(" (step %d/%d, loss %.3f)", j.Progress.Step, j.Progress.TotalSteps, j.Progress.Loss)
			}
			fmt.Fprintln(w, line)
			last = j.Status
		}
		return j.Status == "completed" || j.Status == "failed" || j.Status == "cancelled"
	})
	if err != nil {
		return err
	}
	if j.Status != "completed" {
		return fmt.Errorf("the demo job ended %s: %+v", j.Status, j.Error)
	}
	fmt.Fprintf(w, "demo 5/6 trained    on the RunPod emulator's simulated worker (set BRIGHTRUN_RUNPOD_URL for real GPUs)\n")

	var arts struct {
		Artifacts []struct {
			Name      string
			SizeBytes int64 `json:"size_bytes"`
			SHA256    string
			Download  struct{ URL string }
		}
	}
	if err := c.do(ctx, "GET", "/v1/jobs/"+j.ID+"/artifacts", "", &arts); err != nil {
		return err
	}
	var names []string
	for _, a := range arts.Artifacts {
		resp, err := http.Get(a.Download.URL)
		if err != nil {
			return err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != a.SHA256 {
			return fmt.Errorf("%s: sha256 mismatch", a.Name)
		}
		names = append(names, fmt.Sprintf("%s (%d bytes)", a.Name, len(data)))
	}
	fmt.Fprintf(w, "demo 6/6 adapter    %s — sha256 verified\n\n", strings.Join(names, ", "))
	return nil
}

func hours(s int64) string {
	if s < 3600 {
		return fmt.Sprintf("%dm", (s+59)/60)
	}
	return fmt.Sprintf("%.1fh", float64(s)/3600)
}

type demoClient struct{ base, token string }

func (c *demoClient) do(ctx context.Context, method, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}

func (c *demoClient) poll(ctx context.Context, limit time.Duration, path string, out any, done func() bool) error {
	deadline := time.Now().Add(limit)
	for {
		if err := c.do(ctx, "GET", path, "", out); err != nil {
			return err
		}
		if done() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not finish within %s", path, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
