package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Report is the whole run, as -json prints it.
type Report struct {
	Started  time.Time  `json:"started"`
	Setup    string     `json:"setup"`
	CPUs     int        `json:"cpus"`
	Go       string     `json:"go"`
	Scenario []Scenario `json:"scenarios"`
	// OK is false when a correctness check failed (a performance target
	// missed does not make it false: see each check's Kind).
	OK bool `json:"ok"`
}

// Scenario is one scenario's results.
type Scenario struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Rate        float64    `json:"rate_per_second"`  // requested
	Duration    float64    `json:"duration_seconds"` // requested
	Overall     Stats      `json:"overall"`
	Endpoints   []Stats    `json:"endpoints,omitempty"`
	Checks      []Check    `json:"checks"`
	StackLog    logSummary `json:"stack_log"`
	Profiles    []string   `json:"profiles,omitempty"`
	// LoadAverage is the machine's 1, 5 and 15 minute load averages when
	// the load began and ended (Linux; other work on the machine skews
	// the figures).
	LoadAverage [2]string `json:"load_average"`
}

// Stats summarizes a set of requests.
type Stats struct {
	Label    string `json:"label"`
	Requests int    `json:"requests"`
	// Success is the share of 2xx answers, 0..1.
	Success float64 `json:"success"`
	P50     ms      `json:"p50_ms"`
	P99     ms      `json:"p99_ms"`
	Max     ms      `json:"max_ms"`
	// Rate is the requests sent per second, from the first request sent
	// to the last; Throughput the successful ones per second, from the
	// first request sent to the last answer.
	Rate       float64        `json:"rate"`
	Throughput float64        `json:"throughput"`
	Codes      map[string]int `json:"status_codes"`
	Errors     []string       `json:"errors,omitempty"`
}

// ms is a duration that JSON shows as milliseconds.
type ms time.Duration

func (d ms) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, math.Round(float64(d)/1e3)/1e3, 'f', -1, 64), nil
}

func (d *ms) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	*d = ms(f * 1e6)
	return err
}

func (d ms) String() string {
	return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
}

// Check is one asserted figure.
type Check struct {
	Name string `json:"name"`
	Got  string `json:"got"`
	Want string `json:"want"`
	OK   bool   `json:"ok"`
	// Kind is "target" (performance) or "correctness".
	Kind string `json:"kind"`
}

func target(name, got, want string, ok bool) Check { return Check{name, got, want, ok, "target"} }
func correct(name string, got, want int) Check {
	return Check{name, strconv.Itoa(got), strconv.Itoa(want), got == want, "correctness"}
}

// summarize computes Stats of results: exact quantiles from every latency.
func summarize(label string, results []*vegeta.Result) Stats {
	s := Stats{Label: label, Requests: len(results), Codes: map[string]int{}}
	if len(results) == 0 {
		return s
	}
	lat := make([]time.Duration, 0, len(results))
	errs := map[string]bool{}
	ok := 0
	first, lastSent, last := results[0].Timestamp, results[0].Timestamp, results[0].End()
	for _, r := range results {
		lat = append(lat, r.Latency)
		s.Codes[strconv.Itoa(int(r.Code))]++
		if r.Code >= 200 && r.Code < 300 && r.Error == "" {
			ok++
		} else if e := errorText(r); !errs[e] && len(errs) < 5 {
			errs[e] = true
			s.Errors = append(s.Errors, e)
		}
		if r.Timestamp.Before(first) {
			first = r.Timestamp
		}
		if r.Timestamp.After(lastSent) {
			lastSent = r.Timestamp
		}
		if r.End().After(last) {
			last = r.End()
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) ms { return ms(lat[max(0, int(math.Ceil(p*float64(len(lat))))-1)]) }
	s.P50, s.P99, s.Max = q(0.50), q(0.99), ms(lat[len(lat)-1])
	s.Success = float64(ok) / float64(len(results))
	// As vegeta reports them: the rate over the sending, the throughput
	// until the last answer.
	if span := lastSent.Sub(first).Seconds(); span > 0 {
		s.Rate = float64(len(results)) / span
	}
	if span := last.Sub(first).Seconds(); span > 0 {
		s.Throughput = float64(ok) / span
	}
	return s
}

func errorText(r *vegeta.Result) string {
	e := r.Error
	if body := strings.TrimSpace(string(r.Body)); body != "" && r.Code != 0 {
		if len(body) > 160 {
			body = body[:160] + "…"
		}
		e += ": " + body
	}
	return e
}

// printReport writes the tables.
func printReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "benchload: %s; %d CPUs, %s\n", rep.Setup, rep.CPUs, rep.Go)
	for _, sc := range rep.Scenario {
		fmt.Fprintf(w, "\n== %s: %s\n", sc.Name, sc.Description)
		fmt.Fprintf(w, "   %-26s %9s %9s %9s %9s %10s %11s\n", "requests", "count", "success", "p50", "p99", "max", "throughput")
		for _, s := range append(sc.Endpoints, sc.Overall) {
			fmt.Fprintf(w, "   %-26s %9d %8.2f%% %9s %9s %10s %9.1f/s\n", s.Label, s.Requests, 100*s.Success, s.P50, s.P99, s.Max, s.Throughput)
		}
		for _, e := range sc.Overall.Errors {
			fmt.Fprintf(w, "   error: %s\n", e)
		}
		fmt.Fprintf(w, "   %-48s %-14s %-14s %s\n", "check", "got", "want", "")
		for _, c := range sc.Checks {
			verdict := "ok"
			if !c.OK && c.Kind == "target" {
				verdict = "MISSED (target)"
			} else if !c.OK {
				verdict = "FAIL"
			}
			fmt.Fprintf(w, "   %-48s %-14s %-14s %s\n", c.Name, c.Got, c.Want, verdict)
		}
		if sc.LoadAverage[0] != "" {
			fmt.Fprintf(w, "   machine load average (1, 5, 15 min): %s at the start, %s at the end\n", sc.LoadAverage[0], sc.LoadAverage[1])
		}
		fmt.Fprintf(w, "   stack log: %d warnings, %d errors", sc.StackLog.Warnings, sc.StackLog.Errors)
		if len(sc.StackLog.Samples) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(sc.StackLog.Samples, "; "))
		}
		fmt.Fprintln(w)
		for _, p := range sc.Profiles {
			fmt.Fprintf(w, "   profile: %s\n", p)
		}
	}
	verdict := "all correctness checks passed"
	if !rep.OK {
		verdict = "CORRECTNESS CHECKS FAILED"
	}
	fmt.Fprintf(w, "\n%s\n", verdict)
}

// loadAverage reads the machine's load averages ("" where unknown).
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
