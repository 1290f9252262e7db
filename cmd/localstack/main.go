// Command localstack runs the whole Bright Run pipeline on this machine:
// the HTTP API, the embedded store, queue and blobs, with state under
// .local/ (BRIGHTRUN_DATA). `make run` starts it.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/brightrun/brightrun/shared/localstack"
)

func main() {
	if err := run(os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "localstack:", err)
		os.Exit(1)
	}
}

func run(getenv func(string) string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)
	cfg := localstack.ConfigFromEnv(getenv)
	cfg.Log = log
	stack, err := localstack.Open(cfg)
	if err != nil {
		return err
	}
	if err := stack.Start(); err != nil {
		stack.Close(context.Background())
		return err
	}
	printBanner(stdout, stack)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if getenv("DEMO") != "0" {
		go func() {
			token := firstToken(stack)
			if err := demo(ctx, stdout, stack.URL(), token, "testdata/datasets/sample.jsonl"); err != nil && ctx.Err() == nil {
				log.Error("demo failed", "err", err)
				return
			}
			fmt.Fprintln(stdout, "The local stack keeps serving. DEMO=0 make run skips the demo.")
		}()
	}
	<-ctx.Done()
	log.Info("shutting down: finishing requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stack.Close(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	log.Info("stopped; state kept", "data", cfg.DataDir)
	return nil
}

// firstToken returns the dev token of the first user by name.
func firstToken(s *localstack.Stack) string {
	_, token := firstUser(s)
	return token
}

func firstUser(s *localstack.Stack) (user, token string) {
	for t, u := range s.Tokens {
		if user == "" || u < user {
			user, token = u, t
		}
	}
	return user, token
}

func printBanner(w io.Writer, s *localstack.Stack) {
	user, token := firstUser(s)
	fmt.Fprintf(w, `
Bright Run local stack
  console %s/ (open it in a browser; sign in with the token below)
  API     %s
  data    %s (kept across restarts; delete it to start over)
  token   %s (user %q; set BRIGHTRUN_DEV_TOKENS=user:token,... for others)

Try:
  curl -s -H 'Authorization: Bearer %s' -d '{"name":"demo","size_bytes":1234}' %s/v1/datasets
  curl -s -H 'Authorization: Bearer %s' %s/v1/datasets

Stop with Ctrl-C.
`, s.URL(), s.URL(), s.Config.DataDir, token, user, token, s.URL(), token, s.URL())
}
