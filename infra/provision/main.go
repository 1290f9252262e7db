// Command provision creates or updates the RunPod Serverless template and
// endpoint that run the GPU worker (gpu-image/), through RunPod's REST API.
// It is idempotent: it finds both by name, creates what is missing and
// changes only what differs. It prints the endpoint id that template.yaml's
// RunPodEndpointId parameter takes.
//
//	export RUNPOD_API_KEY=...   # never a flag: it would stay in the shell history
//	go run ./infra/provision --image ghcr.io/acme/brightrun-worker:1.0.0 --network-volume abc123xyz
//
// --dry-run prints every request instead of sending it. With RUNPOD_API_KEY
// set it still reads the account (GET, which changes nothing) and prints
// the writes that would follow; without it, it assumes an empty account.
//
// GPU types are the catalog's ids (the API's gpu_type): each brings its
// RunPod GPU type names, tried in the order given.
//
// The prepare-model subcommand writes a model's pre-quantized 4-bit copy on
// the endpoint's network volume, through one prepare_model job on the
// endpoint (RunPod's job API, https://api.runpod.ai/v2), and waits for it;
// Ctrl-C cancels the job. Once per volume (docs/deploy.md, section 5):
//
//	go run ./infra/provision prepare-model --endpoint ENDPOINT_ID --model Qwen/Qwen3-Next-80B-A3B-Instruct
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/brightrun/brightrun/shared/catalog"
)

func main() {
	// Ctrl-C (or SIGTERM) ends the context: prepare-model then cancels its
	// RunPod job instead of leaving it running unattended.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		stop()
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "provision:", err)
		}
		os.Exit(2)
	}
}

// DefaultGPUs are the catalog GPUs the default endpoint offers: the 80 GB
// and larger classes, on which the default base model trains (QLoRA on
// 80 GB, bf16 LoRA on 141 GB), cheapest first.
const DefaultGPUs = "a100-80gb,h100-80gb,h200-141gb"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "prepare-model" {
		return runPrepareModel(ctx, args[1:], getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet("provision", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := Config{Env: map[string]string{
		// The image sets these too; a template keeps them for any image:
		// nothing may be fetched from a model hub at run time.
		"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
	}}
	var gpus, volumes, dataCenters string
	apiURL := DefaultAPIURL
	dryRun := false
	timeout := 2 * time.Minute
	fs.StringVar(&cfg.Name, "name", "brightrun-worker", "name of the RunPod template and endpoint")
	fs.StringVar(&cfg.Image, "image", "", "worker image, built from gpu-image/Dockerfile and pushed (required)")
	fs.StringVar(&cfg.RegistryAuthID, "registry-auth", "", "RunPod container registry credentials id, for a private image")
	fs.Func("env", "worker environment variable `KEY=VALUE` (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", s)
		}
		cfg.Env[k] = v
		return nil
	})
	fs.IntVar(&cfg.ContainerDiskGB, "container-disk-gb", 50, "container disk per worker (dataset, adapter, scratch)")
	fs.StringVar(&gpus, "gpus", DefaultGPUs, "catalog GPU ids, in the order RunPod should try them")
	fs.StringVar(&volumes, "network-volume", "", "network volume id(s) holding the base models, comma-separated (required)")
	fs.StringVar(&dataCenters, "data-centers", "", "RunPod data center ids workers may run in, comma-separated (default: the volume's)")
	fs.StringVar(&cfg.MinCUDA, "min-cuda", "12.8", "oldest host CUDA version (the image is built on CUDA 12.8)")
	fs.DurationVar(&cfg.ExecutionTimeout, "execution-timeout", 24*time.Hour, "endpoint execution timeout (jobs set their own)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 5*time.Second, "how long an idle worker is kept")
	fs.IntVar(&cfg.WorkersMin, "workers-min", 0, "always-on workers (billed while idle)")
	fs.IntVar(&cfg.WorkersMax, "workers-max", 3, "most workers at once (RunPod's account default caps it at 5)")
	fs.BoolVar(&cfg.FlashBoot, "flashboot", true, "FlashBoot: faster worker starts")
	fs.StringVar(&apiURL, "api-url", apiURL, "RunPod REST API base URL")
	fs.BoolVar(&dryRun, "dry-run", false, "print the requests instead of sending them")
	fs.DurationVar(&timeout, "timeout", timeout, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	cat, err := catalog.FromEnv(getenv)
	if err != nil {
		return err
	}
	for _, id := range split(gpus) {
		g, err := cat.GPU(id)
		if err != nil {
			return fmt.Errorf("--gpus: %w", err)
		}
		for _, t := range g.RunPodGPUTypeIDs {
			if !slices.Contains(cfg.GPUTypeIDs, t) {
				cfg.GPUTypeIDs = append(cfg.GPUTypeIDs, t)
			}
		}
	}
	cfg.NetworkVolumeIDs, cfg.DataCenterIDs = split(volumes), split(dataCenters)
	if err := cfg.Check(); err != nil {
		return err
	}

	key := getenv("RUNPOD_API_KEY")
	if key == "" && !dryRun {
		return errors.New("RUNPOD_API_KEY is not set (RunPod console → Settings → API Keys; read/write)")
	}
	client := &Client{BaseURL: strings.TrimRight(apiURL, "/"), APIKey: key, HTTP: &http.Client{Timeout: 30 * time.Second}, DryRun: dryRun, Out: stdout}
	if dryRun {
		fmt.Fprintf(stdout, "# dry run: the requests provision makes, in order; writes are not sent\n")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := Provision(ctx, client, cfg)
	if err != nil {
		return err
	}
	report := func(kind, action, id string, changes []string) {
		fmt.Fprintf(stdout, "%s %s: %s (%s)\n", kind, cfg.Name, action, id)
		for _, c := range changes {
			fmt.Fprintf(stdout, "  %s\n", c)
		}
	}
	report("template", res.TemplateAction, res.TemplateID, res.TemplateChanges)
	report("endpoint", res.EndpointAction, res.EndpointID, res.EndpointChanges)
	if !dryRun {
		fmt.Fprintf(stdout, "RunPodEndpointId=%s\n", res.EndpointID)
	}
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
