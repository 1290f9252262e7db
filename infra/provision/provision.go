package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
)

// DefaultAPIURL is RunPod's management REST API.
const DefaultAPIURL = "https://rest.runpod.io/v1"

// Config is the worker's template and endpoint as they should be.
type Config struct {
	// Name names both the template (unique per account) and the endpoint.
	Name string
	// Image is the worker image (gpu-image/Dockerfile), pushed to a registry.
	Image string
	// RegistryAuthID names RunPod's credentials for a private registry.
	RegistryAuthID string
	// Env is the worker's environment.
	Env map[string]string
	// ContainerDiskGB holds the dataset and the adapter while a job runs.
	ContainerDiskGB int
	// GPUTypeIDs are RunPod's GPU type names, in the order RunPod tries them.
	GPUTypeIDs []string
	// NetworkVolumeIDs hold the base models (mounted at /runpod-volume).
	NetworkVolumeIDs []string
	// DataCenterIDs restrict where workers run; empty: RunPod's default.
	DataCenterIDs []string
	// MinCUDA is the oldest CUDA a host may have (the image's own).
	MinCUDA string
	// ExecutionTimeout caps a job that sets no policy.executionTimeout of
	// its own (dispatch always sets one).
	ExecutionTimeout time.Duration
	// IdleTimeout is how long an idle worker is kept.
	IdleTimeout time.Duration
	// WorkersMin are always-on workers (billed while idle); WorkersMax caps
	// concurrent jobs.
	WorkersMin, WorkersMax int
	// FlashBoot keeps a stopped worker's state for a faster start.
	FlashBoot bool
}

// Check reports every problem of c.
func (c Config) Check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Name == "" || len(c.Name) > 191 {
		bad("--name must be 1 to 191 characters")
	}
	if c.Image == "" {
		bad("--image is required: the worker image built from gpu-image/Dockerfile and pushed to a registry")
	}
	if len(c.NetworkVolumeIDs) == 0 {
		bad("--network-volume is required: the worker reads the base models from the network volume (/runpod-volume)")
	}
	if len(c.GPUTypeIDs) == 0 {
		bad("--gpus must name at least one GPU type")
	}
	if c.ContainerDiskGB < 10 {
		bad("--container-disk-gb must be at least 10")
	}
	if c.ExecutionTimeout < time.Minute || c.ExecutionTimeout > 7*24*time.Hour {
		bad("--execution-timeout must be between 1m and 168h (RunPod's limit)")
	}
	if c.IdleTimeout < time.Second || c.IdleTimeout > time.Hour || c.IdleTimeout%time.Second != 0 {
		bad("--idle-timeout must be whole seconds between 1s and 1h")
	}
	if c.WorkersMin < 0 || c.WorkersMax < 1 || c.WorkersMin > c.WorkersMax {
		bad("--workers-min and --workers-max must satisfy 0 ≤ min ≤ max, max ≥ 1")
	}
	return errors.Join(errs...)
}

// templateInput is the body of POST /templates and PATCH /templates/{id}.
type templateInput struct {
	Name                    string            `json:"name"`
	ImageName               string            `json:"imageName"`
	IsServerless            *bool             `json:"isServerless,omitempty"` // create only
	Category                string            `json:"category,omitempty"`     // create only
	Env                     map[string]string `json:"env"`
	ContainerDiskInGb       int               `json:"containerDiskInGb"`
	VolumeInGb              int               `json:"volumeInGb"`
	Ports                   []string          `json:"ports"`
	ContainerRegistryAuthID string            `json:"containerRegistryAuthId,omitempty"`
	Readme                  string            `json:"readme,omitempty"`
}

func (c Config) template(create bool) templateInput {
	t := templateInput{
		Name: c.Name, ImageName: c.Image, Env: c.Env, ContainerDiskInGb: c.ContainerDiskGB,
		// Serverless workers get the network volume, not a pod volume, and
		// expose no ports.
		VolumeInGb: 0, Ports: []string{}, ContainerRegistryAuthID: c.RegistryAuthID,
		Readme: "Bright Run GPU worker (gpu-image/). Managed by infra/provision: changes made here are overwritten.",
	}
	if t.Env == nil {
		t.Env = map[string]string{}
	}
	if create {
		yes := true
		t.IsServerless, t.Category = &yes, "NVIDIA"
	}
	return t
}

// endpointInput is the body of POST /endpoints and PATCH /endpoints/{id}.
type endpointInput struct {
	Name               string   `json:"name"`
	TemplateID         string   `json:"templateId"`
	ComputeType        string   `json:"computeType,omitempty"` // create only
	GPUTypeIDs         []string `json:"gpuTypeIds"`
	GPUCount           int      `json:"gpuCount"`
	MinCUDAVersion     string   `json:"minCudaVersion,omitempty"`
	ExecutionTimeoutMs int64    `json:"executionTimeoutMs"`
	IdleTimeout        int      `json:"idleTimeout"`
	WorkersMin         int      `json:"workersMin"`
	WorkersMax         int      `json:"workersMax"`
	FlashBoot          bool     `json:"flashboot"`
	ScalerType         string   `json:"scalerType"`
	ScalerValue        int      `json:"scalerValue"`
	NetworkVolumeIDs   []string `json:"networkVolumeIds,omitempty"`
	DataCenterIDs      []string `json:"dataCenterIds,omitempty"`
}

func (c Config) endpoint(templateID string, create bool) endpointInput {
	e := endpointInput{
		Name: c.Name, TemplateID: templateID, GPUTypeIDs: c.GPUTypeIDs, GPUCount: 1, MinCUDAVersion: c.MinCUDA,
		ExecutionTimeoutMs: c.ExecutionTimeout.Milliseconds(), IdleTimeout: int(c.IdleTimeout / time.Second),
		WorkersMin: c.WorkersMin, WorkersMax: c.WorkersMax, FlashBoot: c.FlashBoot,
		// A job waits for a worker at most 4 s before another one starts.
		ScalerType: "QUEUE_DELAY", ScalerValue: 4,
		NetworkVolumeIDs: c.NetworkVolumeIDs, DataCenterIDs: c.DataCenterIDs,
	}
	if create {
		e.ComputeType = "GPU"
	}
	return e
}

// notReturned are fields RunPod's Endpoint object does not report: a
// difference in them alone is not seen.
var notReturned = []string{"flashboot", "computeType"}

// Client calls RunPod's REST API. In a dry run it prints each request
// instead of sending it: reads are still sent when it has a key (they change
// nothing), writes never are.
type Client struct {
	BaseURL string
	APIKey  string
	HTTP    *http.Client
	DryRun  bool
	// Out receives what a dry run would send.
	Out io.Writer
}

// errNotSent marks a dry run's read without a key.
var errNotSent = errors.New("not sent")

func (c *Client) do(ctx context.Context, method, path string, body, into any) error {
	var data []byte
	if body != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(body); err != nil {
			return err
		}
		data = bytes.TrimSpace(buf.Bytes())
	}
	if c.DryRun {
		fmt.Fprintf(c.Out, "%s %s%s\n", method, c.BaseURL, path)
		if body != nil {
			var pretty bytes.Buffer
			_ = json.Indent(&pretty, data, "  ", "  ")
			fmt.Fprintf(c.Out, "  %s\n", pretty.String())
		}
		switch {
		case method != http.MethodGet:
			fmt.Fprintln(c.Out, "  (dry run: not sent)")
			return errNotSent
		case c.APIKey == "":
			fmt.Fprintln(c.Out, "  (dry run without RUNPOD_API_KEY: not sent; assuming none exists)")
			return errNotSent
		}
	}
	var lastErr error
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(try) * time.Second):
			}
		}
		req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			lastErr = fmt.Errorf("%s %s: %w", method, path, err)
			if method == http.MethodGet {
				continue
			}
			return lastErr
		}
		out, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s %s: read answer: %w", method, path, err)
		}
		if resp.StatusCode >= 300 {
			lastErr = fmt.Errorf("%s %s: RunPod answered %s: %s", method, path, resp.Status, snippet(out))
			retryable := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
			if method == http.MethodGet && retryable {
				continue
			}
			return lastErr
		}
		if into != nil {
			if err := json.Unmarshal(out, into); err != nil {
				return fmt.Errorf("%s %s: unreadable answer (%v): %s", method, path, err, snippet(out))
			}
		}
		return nil
	}
	return lastErr
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}

// Result says what Provision did.
type Result struct {
	TemplateID, EndpointID         string
	TemplateAction, EndpointAction string // created, updated, unchanged (or "would ..." in a dry run)
	TemplateChanges                []string
	EndpointChanges                []string
}

// object is a template or an endpoint as RunPod returns it.
type object = map[string]any

// Provision makes the account's template and endpoint named cfg.Name match
// cfg: it lists both, then creates what is missing and updates what differs.
func Provision(ctx context.Context, c *Client, cfg Config) (Result, error) {
	var res Result
	if err := cfg.Check(); err != nil {
		return res, err
	}

	// Endpoint-bound templates are listed only when asked for, and ours is
	// bound once its endpoint exists.
	var templates []object
	err := c.do(ctx, http.MethodGet, "/templates?includeEndpointBoundTemplates=true", nil, &templates)
	if err != nil && !errors.Is(err, errNotSent) {
		return res, err
	}
	var current object
	for _, t := range templates {
		if t["name"] == cfg.Name {
			current = t
		}
	}
	switch {
	case current == nil:
		var created object
		err := c.do(ctx, http.MethodPost, "/templates", cfg.template(true), &created)
		if errors.Is(err, errNotSent) {
			res.TemplateID, res.TemplateAction = "<id of the new template "+cfg.Name+">", "would create"
			break
		}
		if err != nil {
			return res, err
		}
		res.TemplateID, res.TemplateAction = str(created["id"]), "created"
	case current["isServerless"] == false:
		return res, fmt.Errorf("template %q (%v) is a Pod template: choose another --name", cfg.Name, current["id"])
	default:
		res.TemplateID = str(current["id"])
		want := cfg.template(false)
		res.TemplateChanges = differences(want, current, nil)
		if len(res.TemplateChanges) == 0 {
			res.TemplateAction = "unchanged"
			break
		}
		err := c.do(ctx, http.MethodPatch, "/templates/"+url.PathEscape(res.TemplateID), want, nil)
		if errors.Is(err, errNotSent) {
			res.TemplateAction = "would update"
			break
		}
		if err != nil {
			return res, err
		}
		res.TemplateAction = "updated"
	}

	var endpoints []object
	err = c.do(ctx, http.MethodGet, "/endpoints", nil, &endpoints)
	if err != nil && !errors.Is(err, errNotSent) {
		return res, err
	}
	var mine []object
	for _, e := range endpoints {
		// Older tools marked FlashBoot endpoints with a " -fb" name suffix.
		if name := str(e["name"]); name == cfg.Name || name == cfg.Name+" -fb" {
			mine = append(mine, e)
		}
	}
	switch len(mine) {
	case 0:
		var created object
		err := c.do(ctx, http.MethodPost, "/endpoints", cfg.endpoint(res.TemplateID, true), &created)
		if errors.Is(err, errNotSent) {
			res.EndpointID, res.EndpointAction = "<id of the new endpoint "+cfg.Name+">", "would create"
			break
		}
		if err != nil {
			return res, err
		}
		res.EndpointID, res.EndpointAction = str(created["id"]), "created"
	case 1:
		res.EndpointID = str(mine[0]["id"])
		want := cfg.endpoint(res.TemplateID, false)
		res.EndpointChanges = differences(want, mine[0], notReturned)
		if len(res.EndpointChanges) == 0 {
			res.EndpointAction = "unchanged"
			break
		}
		err := c.do(ctx, http.MethodPatch, "/endpoints/"+url.PathEscape(res.EndpointID), want, nil)
		if errors.Is(err, errNotSent) {
			res.EndpointAction = "would update"
			break
		}
		if err != nil {
			return res, err
		}
		res.EndpointAction = "updated"
	default:
		var ids []string
		for _, e := range mine {
			ids = append(ids, str(e["id"]))
		}
		return res, fmt.Errorf("%d endpoints are named %q (%s): delete the extra ones or choose another --name", len(mine), cfg.Name, strings.Join(ids, ", "))
	}
	return res, nil
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// differences lists the fields of want (a request body) whose value in have
// (RunPod's object) differs, as "field: old → new". A field have lacks
// counts as different unless it is one RunPod does not return; empty
// values (0, "", [], {}) equal a missing one.
func differences(want any, have object, unreported []string) []string {
	var w object
	b, _ := json.Marshal(want)
	_ = json.Unmarshal(b, &w)
	var out []string
	for _, k := range slices.Sorted(keys(w)) {
		if k == "readme" {
			continue
		}
		h, ok := have[k]
		if !ok && slices.Contains(unreported, k) {
			continue
		}
		// RunPod reports a single attached volume as networkVolumeId.
		if k == "networkVolumeIds" && !ok {
			if id, single := have["networkVolumeId"].(string); single && id != "" {
				h = []any{id}
			}
		}
		if empty(w[k]) && empty(h) {
			continue
		}
		if !reflect.DeepEqual(w[k], h) {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, compact(h), compact(w[k])))
		}
	}
	return out
}

func keys(m object) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func empty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case float64:
		return v == 0
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

func compact(v any) string {
	if v == nil {
		return "(unset)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
