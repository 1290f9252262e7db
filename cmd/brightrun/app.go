package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/client"
)

// app is one run of the CLI: its streams, the global flags and the
// environment.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	// Global flags.
	apiURL  string
	token   string
	jsonOut bool
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "brightrun",
		Short: "Bright Run: chat datasets to trained LoRA adapters",
		Long: `brightrun validates chat datasets (JSONL, one {"messages": [...]} per line),
uploads them, estimates what a LoRA fine-tune costs and how long it takes,
runs training jobs on RunPod GPUs, shows their progress and downloads the
trained adapters.

The API's address and token come from --api-url and --token, else from
BRIGHTRUN_API_URL and BRIGHTRUN_TOKEN, else from 'brightrun config set',
else the local stack's defaults (` + defaultAPIURL + `, ` + defaultToken + `).
Every command takes --json for scripts.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: err, help: cmd.CommandPath()}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.apiURL, "api-url", "", "API base URL (default: BRIGHTRUN_API_URL, the config file, or "+defaultAPIURL+")")
	pf.StringVar(&a.token, "token", "", "API bearer token (default: BRIGHTRUN_TOKEN, the config file, or "+defaultToken+")")
	pf.BoolVar(&a.jsonOut, "json", false, "print JSON for scripts instead of text")
	root.SetUsageTemplate(root.UsageTemplate() + exitStatusHelp)

	root.AddCommand(
		a.validateCommand(),
		a.configCommand(),
		a.datasetsCommand(),
		a.estimateCommand(),
		a.jobsCommand(),
		a.webhooksCommand(),
		a.presetsCommand(),
		a.gpusCommand(),
	)
	return root
}

// group is a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(cmd, "unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	c.AddCommand(subs...)
	return c
}

// noArgs and exactArgs are cobra's argument checks with usage errors.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(cmd, "unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef(cmd, "expected %d argument(s) (usage: %s), got %d", n, cmd.UseLine(), len(args))
		}
		return nil
	}
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef(cmd, "expected %d to %d arguments (usage: %s), got %d", lo, hi, cmd.UseLine(), len(args))
		}
		return nil
	}
}

// client returns an API client for the resolved address and token.
func (a *app) client() (*client.Client, error) {
	s, err := a.settings()
	if err != nil {
		return nil, err
	}
	cl := client.New(s.APIURL.Value, s.Token.Value)
	cl.UserAgent = "brightrun-cli"
	return cl, nil
}

// printJSON writes v as indented JSON on stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// note writes a progress message on stderr (never on stdout, which --json
// keeps for the result).
func (a *app) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	fmt.Fprint(a.stderr, msg)
}
