package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// client is what the scenarios need of the API for seeding and counting
// (the load itself goes through vegeta's attacker).
type client struct {
	base string
	hc   *http.Client
}

func newClient(base string) *client {
	return &client{base: base, hc: &http.Client{Timeout: 30 * time.Second}}
}

// do sends one request with the dev token and decodes a 2xx answer into out.
func (c *client) do(ctx context.Context, method, path string, header http.Header, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s = %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// poll calls ok every 50 ms until it returns true or an error, or limit passes.
func poll(ctx context.Context, limit time.Duration, what string, ok func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		done, err := ok()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readyDataset uploads the sample and waits until validation made it ready.
func (c *client) readyDataset(ctx context.Context, sample []byte) (string, error) {
	var created struct {
		Dataset struct{ ID string }
		Upload  struct {
			Request struct {
				Method, URL string
				Headers     map[string]string
			}
		}
	}
	body := fmt.Sprintf(`{"name":"benchload sample","size_bytes":%d}`, len(sample))
	if err := c.do(ctx, "POST", "/v1/datasets", nil, []byte(body), &created); err != nil {
		return "", err
	}
	up := created.Upload.Request
	req, err := http.NewRequestWithContext(ctx, up.Method, up.URL, bytes.NewReader(sample))
	if err != nil {
		return "", err
	}
	for k, v := range up.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("upload the sample: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("upload the sample: HTTP %d", resp.StatusCode)
	}
	id := created.Dataset.ID
	err = poll(ctx, time.Minute, "the sample dataset to be validated", func() (bool, error) {
		var d struct{ Status string }
		if err := c.do(ctx, "GET", "/v1/datasets/"+id, nil, nil, &d); err != nil {
			return false, err
		}
		if d.Status == "invalid" || d.Status == "failed" {
			return false, fmt.Errorf("the sample dataset is %s", d.Status)
		}
		return d.Status == "ready", nil
	})
	return id, err
}

// jobBody is the job every scenario creates: the fast preset on the sample.
func jobBody(dataset string) []byte {
	return fmt.Appendf(nil, `{"dataset_id":%q,"preset":"fast"}`, dataset)
}

// createJob creates a job with an Idempotency-Key and returns its id.
func (c *client) createJob(ctx context.Context, dataset, key string) (string, error) {
	var j struct{ ID string }
	err := c.do(ctx, "POST", "/v1/jobs", http.Header{"Idempotency-Key": {key}}, jobBody(dataset), &j)
	return j.ID, err
}

// jobView is the part of a job the checks read.
type jobView struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Attempt  int    `json:"attempt"`
	Progress *struct {
		Attempt int `json:"attempt"`
		Step    int `json:"step"`
	} `json:"progress"`
}

func (c *client) job(ctx context.Context, id string) (jobView, error) {
	var j jobView
	err := c.do(ctx, "GET", "/v1/jobs/"+id, nil, nil, &j)
	return j, err
}

// allJobIDs lists every job of the owner through the API, page by page.
func (c *client) allJobIDs(ctx context.Context) (map[string]bool, error) {
	ids := map[string]bool{}
	cursor := ""
	for {
		var page struct {
			Jobs       []jobView `json:"jobs"`
			NextCursor string    `json:"next_cursor"`
		}
		if err := c.do(ctx, "GET", "/v1/jobs?limit=100&cursor="+cursor, nil, nil, &page); err != nil {
			return nil, err
		}
		for _, j := range page.Jobs {
			ids[j.ID] = true
		}
		if page.NextCursor == "" {
			return ids, nil
		}
		cursor = page.NextCursor
	}
}

// metricSteps lists a job's stored metric points of one attempt through
// the API, page by page, and returns their steps.
func (c *client) metricSteps(ctx context.Context, id string, attempt int) ([]int, error) {
	var steps []int
	cursor := ""
	for {
		var page struct {
			Metrics    []struct{ Attempt, Step int } `json:"metrics"`
			NextCursor string                        `json:"next_cursor"`
		}
		if err := c.do(ctx, "GET", "/v1/jobs/"+id+"/metrics?limit=100&cursor="+cursor, nil, nil, &page); err != nil {
			return nil, err
		}
		for _, p := range page.Metrics {
			if p.Attempt == attempt {
				steps = append(steps, p.Step)
			}
		}
		if page.NextCursor == "" {
			return steps, nil
		}
		cursor = page.NextCursor
	}
}

// counts reads the child's counters.
func (st *stack) counts(ctx context.Context) (*counts, error) {
	var out counts
	c := &client{base: st.Control, hc: &http.Client{Timeout: 30 * time.Second}}
	err := c.do(ctx, "GET", "/counts", nil, nil, &out)
	return &out, err
}

// waitSubmitted waits until the dispatcher submitted every job of ids.
func (st *stack) waitSubmitted(ctx context.Context, ids []string, limit time.Duration) (*counts, error) {
	var last *counts
	err := poll(ctx, limit, fmt.Sprintf("%d jobs to be dispatched", len(ids)), func() (bool, error) {
		c, err := st.counts(ctx)
		if err != nil {
			return false, err
		}
		last = c
		for _, id := range ids {
			if c.Submissions[id] == 0 {
				return false, nil
			}
		}
		return true, nil
	})
	return last, err
}

// idempotentJobID is the id the API gives a job created with key.
func idempotentJobID(key string) string { return pipeline.IdempotentJobID(owner, key) }

// findSample finds testdata/datasets/sample.jsonl in the working directory
// or a parent of it (the tool runs from the repository root or, in its
// test, from its own folder).
func findSample() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "testdata", "datasets", "sample.jsonl")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testdata/datasets/sample.jsonl not found here or above: run from the repository or pass -sample")
		}
		dir = parent
	}
}
