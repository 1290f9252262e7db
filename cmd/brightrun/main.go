// Command brightrun is the user CLI of Bright Run: validate chat datasets
// locally, upload them, estimate and run LoRA fine-tuning jobs, watch them
// train and download the adapters. See README.md in this folder.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/client"
)

func main() {
	err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if line := errorLine(err); line != "" {
		fmt.Fprintln(os.Stderr, line)
	}
	os.Exit(exitCode(err))
}

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1 // the thing asked about failed or is invalid
	exitUsage       = 2 // usage or local I/O error
	exitAPI         = 3 // the API answered with an error (4xx/5xx)
	exitUnreachable = 4 // the API could not be reached
	exitInterrupted = 130
)

const exitStatusHelp = `
Exit status:
  0  ok
  1  the thing asked about failed or is invalid (an invalid dataset, a failed
     or cancelled job, a download that does not match its checksum)
  2  usage or local I/O error
  3  API error (the API answered 4xx or 5xx)
  4  could not reach the API
  130 interrupted (Ctrl-C)
`

// run runs the CLI with args (without the program name). It returns the
// error that decides the exit status; main prints it with errorLine.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

// exitError gives an error its exit status. A silent one has already
// been explained on the output (an invalid dataset's summary, a failed
// job's outcome), so nothing more is printed.
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// failedf is exit status 1 with a message.
func failedf(format string, args ...any) error {
	return &exitError{code: exitFailed, err: fmt.Errorf(format, args...)}
}

// silentFailure is exit status 1 when the output already says why.
func silentFailure(why string) error {
	return &exitError{code: exitFailed, err: errors.New(why), silent: true}
}

// usageError is exit status 2 for a bad command line.
type usageError struct {
	err  error
	help string // the command path whose --help to suggest
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...), help: cmd.CommandPath()}
}

// exitCode maps an error to the exit status.
func exitCode(err error) int {
	var (
		ee *exitError
		ue *client.UnreachableError
		ae *client.APIError
		te *client.TransferError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ue):
		return exitUnreachable
	case errors.As(err, &ae), errors.As(err, &te):
		return exitAPI
	}
	// Cobra's own errors (unknown command or flag, wrong number of
	// arguments) and local I/O errors.
	return exitUsage
}

// errorLine is what main prints for err: one line (two with a hint), or
// nothing when err is nil or silent.
func errorLine(err error) string {
	var (
		ee *exitError
		ue *usageError
		ce *client.UnreachableError
		ae *client.APIError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ee) && ee.silent:
		return ""
	case errors.Is(err, context.Canceled):
		return "error: interrupted"
	case errors.As(err, &ue):
		return "error: " + ue.Error() + "\n(see '" + ue.help + " --help')"
	case errors.As(err, &ce):
		return "error: " + oneLine(err.Error()) + "\n(is the API running? `make run` starts the local stack; set the address with --api-url, BRIGHTRUN_API_URL or `brightrun config set api_url URL`)"
	case errors.As(err, &ae) && ae.Code == "unauthorized":
		return "error: " + oneLine(err.Error()) + "\n(set the token with --token, BRIGHTRUN_TOKEN or `brightrun config set token TOKEN`)"
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") || strings.HasPrefix(msg, "unknown shorthand flag") ||
		strings.Contains(msg, "arg(s)") || strings.HasPrefix(msg, "invalid argument") || strings.HasPrefix(msg, "flag needs an argument") {
		return "error: " + oneLine(msg) + "\n(see 'brightrun --help')"
	}
	return "error: " + oneLine(msg)
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
