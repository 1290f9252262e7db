package pipeline_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

func queue(t0 time.Time, spec string) []pipeline.QueuedJob {
	// spec: "a1 b1 a2": owner letter and number, in order of creation.
	var out []pipeline.QueuedJob
	for i, name := range strings.Fields(spec) {
		out = append(out, pipeline.QueuedJob{Owner: name[:1], ID: name, CreatedAt: t0.Add(time.Duration(i) * time.Second)})
	}
	return out
}

func names(js []pipeline.QueuedJob) string {
	var s []string
	for _, j := range js {
		s = append(s, j.ID)
	}
	return strings.Join(s, " ")
}

func TestPlanDispatchTakesTurnsWithinLimits(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		fair       pipeline.Fairness
		queued     string
		inFlight   map[string]int
		lastServed map[string]time.Time
		start      string
		waiting    string // id:position:reason
	}{
		{"one owner: its limit, oldest first", pipeline.Fairness{}, "a1 a2 a3 a4 a5", nil, nil,
			"a1 a2 a3", "a4:1:owner_limit a5:2:owner_limit"},
		{"a late owner takes turns with an early one", pipeline.Fairness{OwnerLimit: 10, MaxInFlight: 4}, "a1 a2 a3 a4 a5 a6 b1 b2", nil, nil,
			"a1 b1 a2 b2", "a3:1:capacity a4:2:capacity a5:3:capacity a6:4:capacity"},
		{"the owner served least recently goes first", pipeline.Fairness{MaxInFlight: 1}, "a1 b1 c1", nil,
			map[string]time.Time{"a": t0.Add(time.Hour), "b": t0.Add(2 * time.Hour)},
			"c1", "a1:1:capacity b1:2:capacity"},
		{"an owner at its limit waits, others start", pipeline.Fairness{OwnerLimit: 2}, "a1 a2 b1", map[string]int{"a": 2}, nil,
			"b1", "a1:1:owner_limit a2:2:owner_limit"},
		{"a per-owner override", pipeline.Fairness{OwnerLimits: map[string]int{"a": 1}}, "a1 a2 b1 b2", nil, nil,
			"a1 b1 b2", "a2:1:owner_limit"},
		{"no free slot: nothing starts", pipeline.Fairness{MaxInFlight: 3}, "a1 b1", map[string]int{"c": 3}, nil,
			"", "a1:1:capacity b1:2:capacity"},
		{"nothing queued", pipeline.Fairness{}, "", map[string]int{"a": 1}, nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pipeline.PlanDispatch(tt.fair, queue(t0, tt.queued), tt.inFlight, tt.lastServed)
			var w []string
			for _, x := range p.Waiting {
				w = append(w, fmt.Sprintf("%s:%d:%s", x.ID, x.Position, x.Reason))
				if x.Message == "" {
					t.Errorf("%s waits without a message", x.ID)
				}
			}
			if got := names(p.Start); got != tt.start {
				t.Errorf("start = %q, want %q", got, tt.start)
			}
			if got := strings.Join(w, " "); got != tt.waiting {
				t.Errorf("waiting = %q, want %q", got, tt.waiting)
			}
		})
	}
}

// With 500 jobs of one owner queued first, 20 owners arriving later with
// one job each, and slots freeing one at a time, no owner ever has more
// than its limit in flight, and every late owner starts within its first
// turn (before the early owner's fourth job).
func TestPlanDispatchServesLateOwnersWithinOneTurn(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var queued []pipeline.QueuedJob
	for i := 0; i < 500; i++ {
		queued = append(queued, pipeline.QueuedJob{Owner: "big", ID: fmt.Sprintf("big-%03d", i), CreatedAt: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	for i := 0; i < 20; i++ {
		queued = append(queued, pipeline.QueuedJob{Owner: fmt.Sprintf("u%02d", i), ID: fmt.Sprintf("u%02d-job", i), CreatedAt: t0.Add(time.Minute + time.Duration(i)*time.Second)})
	}
	fair := pipeline.Fairness{MaxInFlight: 8}
	inFlight, lastServed := map[string]int{}, map[string]time.Time{}
	var running []pipeline.QueuedJob
	started := map[string]int{} // job -> the order it started in
	now := t0.Add(2 * time.Minute)
	for round := 0; len(started) < 40; round++ {
		p := pipeline.PlanDispatch(fair, queued, inFlight, lastServed)
		for _, s := range p.Start {
			started[s.ID] = len(started)
			inFlight[s.Owner]++
			lastServed[s.Owner] = now
			running = append(running, s)
			if inFlight[s.Owner] > fair.Limit(s.Owner) {
				t.Fatalf("round %d: %s has %d in flight, over its limit", round, s.Owner, inFlight[s.Owner])
			}
			for i, q := range queued {
				if q.ID == s.ID {
					queued = append(queued[:i], queued[i+1:]...)
					break
				}
			}
		}
		if len(running) > fair.MaxInFlight {
			t.Fatalf("round %d: %d runs in flight, over %d", round, len(running), fair.MaxInFlight)
		}
		// The oldest run ends.
		done := running[0]
		running = running[1:]
		inFlight[done.Owner]--
		now = now.Add(time.Minute)
	}
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("u%02d-job", i)
		if _, ok := started[id]; !ok {
			t.Errorf("%s never started", id)
		}
	}
	for i := 0; i < 20; i++ {
		if n := started[fmt.Sprintf("u%02d-job", i)]; n >= 24 {
			t.Errorf("late owner u%02d started %d-th: want within the first 24 starts (one turn each, the early owner's three among them)", i, n)
		}
	}
}

func TestParseOwnerLimits(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "map[]", false},
		{"alice=5, bob=1", "map[alice:5 bob:1]", false},
		{"alice=0", "", true},
		{"alice", "", true},
		{"=3", "", true},
		{"alice=x", "", true},
		{"alice=5x", "", true},
		{" alice = 2 ", "map[alice:2]", false},
	}
	for _, tt := range tests {
		got, err := pipeline.ParseOwnerLimits(tt.in)
		if (err != nil) != tt.wantErr || err == nil && fmt.Sprint(got) != tt.want {
			t.Errorf("ParseOwnerLimits(%q) = %v, %v; want %s (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseOwnerLimits(f *testing.F) {
	for _, s := range []string{"", "alice=5,bob=1", " alice = 2 ", "a=0", "=3", "a=1,a=2", "a=x", ",,", "a=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := pipeline.ParseOwnerLimits(s)
		if err != nil {
			return
		}
		for owner, n := range got {
			if owner == "" || strings.TrimSpace(owner) != owner || n < 1 {
				t.Fatalf("ParseOwnerLimits(%q) accepted owner %q limit %d", s, owner, n)
			}
			f := pipeline.Fairness{OwnerLimits: got}
			if f.Limit(owner) != n {
				t.Fatalf("Limit(%q) = %d, want the parsed %d", owner, f.Limit(owner), n)
			}
		}
	})
}

func TestFairnessFromEnv(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	tests := []struct {
		name    string
		env     map[string]string
		want    string // fmt of the settings, "off" for nil
		wantErr string
	}{
		{"defaults", nil, "{0 map[] 0}", ""},
		{"every setting", map[string]string{"BRIGHTRUN_OWNER_LIMIT": "5", "BRIGHTRUN_OWNER_LIMITS": "alice=2", "BRIGHTRUN_MAX_IN_FLIGHT": "12"}, "{5 map[alice:2] 12}", ""},
		{"turned off", map[string]string{"BRIGHTRUN_FAIR_DISPATCH": "off", "BRIGHTRUN_OWNER_LIMIT": "x"}, "off", ""},
		{"a limit that is not a number", map[string]string{"BRIGHTRUN_OWNER_LIMIT": "three"}, "", "BRIGHTRUN_OWNER_LIMIT must be a whole number"},
		{"a negative slot count", map[string]string{"BRIGHTRUN_MAX_IN_FLIGHT": "-1"}, "", "BRIGHTRUN_MAX_IN_FLIGHT must be a whole number"},
		{"a malformed override", map[string]string{"BRIGHTRUN_OWNER_LIMITS": "alice"}, "", "BRIGHTRUN_OWNER_LIMITS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pipeline.FairnessFromEnv(env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FairnessFromEnv = %v, want an error about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := "off"
			if got != nil {
				s = fmt.Sprint(*got)
			}
			if s != tt.want {
				t.Errorf("FairnessFromEnv = %s, want %s", s, tt.want)
			}
		})
	}
}
