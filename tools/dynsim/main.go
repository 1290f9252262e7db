// Command dynsim prints what the control plane costs in DynamoDB, from
// the real store, lifecycle and reconciler run over an in-memory table
// that bills every request as an on-demand table does (shared/dynamo/
// capacity). No AWS is needed; the figures are deterministic (seeded).
//
//	go run ./tools/dynsim model
//	    each store operation of a job's life: requests, WCU, RCU, the
//	    largest item written, the indexes whose key it changes, the
//	    indexes it writes (what shared/dynamo's budget test enforces)
//	go run ./tools/dynsim day [-window 10m] [-running 10000] [-created 100000] [-owners 1000] [-seed 1] [-top 20]
//	    a busy day: the steady state simulated at full rate for -window,
//	    writes per partition key per second (p50, p99, max, the busiest
//	    partitions), the day's totals (the window scaled to 24 h)
//	go run ./tools/dynsim cost [-running 100,1000,10000]
//	    the monthly on-demand cost at each number of running jobs, with
//	    the prices and assumptions it rests on
//
// The test in shared/dynamo simulates one minute of the busy day; a
// longer window here measures the same steady state over more seconds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/dynamo/capacity"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dynsim:", err)
		os.Exit(2)
	}
}

const usage = "usage: dynsim model | day [-window 10m] [-running N] [-created N] [-owners N] [-seed N] [-top N] | cost [-running 100,1000,10000]"

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, args := args[0], args[1:]
	day := capacity.BusyDay()
	fs := flag.NewFlagSet("dynsim "+cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	switch cmd {
	case "model":
		if err := fs.Parse(args); err != nil {
			return err
		}
		rows, err := capacity.Model(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "What each store operation costs on the table's current layout (WCU and RCU as DynamoDB bills an on-demand table):")
		capacity.PrintRows(out, rows)
		return nil
	case "day":
		fs.DurationVar(&day.Window, "window", 10*time.Minute, "simulated time measured at full rate")
		fs.IntVar(&day.Running, "running", day.Running, "jobs training at once")
		fs.IntVar(&day.CreatedPerDay, "created", day.CreatedPerDay, "jobs created a day")
		fs.IntVar(&day.Owners, "owners", day.Owners, "owners sharing the jobs (Zipf)")
		fs.Uint64Var(&day.Seed, "seed", day.Seed, "seed of the simulation")
		top := fs.Int("top", 20, "busiest partitions to list")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if day.Running < 1 || day.Owners < 1 || day.Window < time.Second {
			return errors.New("-running and -owners must be at least 1, -window at least 1s")
		}
		r, err := capacity.Simulate(ctx, day)
		if err != nil {
			return err
		}
		capacity.PrintDay(out, r, *top)
		return nil
	case "cost":
		list := fs.String("running", "100,1000,10000", "numbers of running jobs, comma-separated")
		if err := fs.Parse(args); err != nil {
			return err
		}
		var running []int
		for _, s := range strings.Split(*list, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				return fmt.Errorf("-running: %q is not a positive number", s)
			}
			running = append(running, n)
		}
		costs, err := capacity.Costs(ctx, day, running, capacity.USEast1)
		if err != nil {
			return err
		}
		capacity.PrintCosts(out, day, costs, capacity.USEast1)
		return nil
	}
	return errors.New(usage)
}
