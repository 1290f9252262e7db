package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/runpodemu"
)

// The demo `make run` prints takes the sample through every stage.
func TestDemoRunsEveryStage(t *testing.T) {
	s, err := localstack.Open(localstack.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Emulator: runpodemu.Config{StepsPerSecond: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	var out bytes.Buffer
	if err := demo(context.Background(), &out, s.URL(), firstToken(s), "../../testdata/datasets/sample.jsonl"); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, stage := range []string{"1/6 upload", "2/6 validate", "ready: 40 examples", "3/6 estimate", "4/6 job", "→ completed", "6/6 adapter", "sha256 verified"} {
		if !strings.Contains(out.String(), stage) {
			t.Errorf("demo output lacks %q:\n%s", stage, out.String())
		}
	}
}

// The banner's first address is the console's, where a new user starts.
func TestTheBannerPrintsTheConsoleAddressFirst(t *testing.T) {
	s, err := localstack.Open(localstack.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	var out bytes.Buffer
	printBanner(&out, s)
	var first string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "http://") {
			first = line
			break
		}
	}
	if want := "console " + s.URL() + "/"; !strings.Contains(first, want) {
		t.Errorf("the banner's first address is %q, want %q in it:\n%s", first, want, out.String())
	}
}
