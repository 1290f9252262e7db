package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/pipeline"

	"github.com/brightrun/brightrun/shared/contract"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Seeds of the read scenario.
const (
	seedDatasets = 20 // one ready, the others waiting for their upload
	seedJobs     = 30
)

func authHeader() http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// newAttacker is vegeta's attacker as every scenario uses it: response
// bodies are kept only as far as an error message needs.
func newAttacker(opts ...func(*vegeta.Attacker)) *vegeta.Attacker {
	return vegeta.NewAttacker(append([]func(*vegeta.Attacker){vegeta.Timeout(10 * time.Second), vegeta.MaxBody(512)}, opts...)...)
}

// seedJobIDs creates n jobs on dataset, keyed prefix-0..n-1.
func seedJobIDs(ctx context.Context, c *client, dataset, prefix string, n int) ([]string, error) {
	ids := make([]string, 0, n)
	for i := range n {
		id, err := c.createJob(ctx, dataset, fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// readsScenario: the three read routes in turn at a constant rate.
func readsScenario(ctx context.Context, st *stack, o options, sample []byte) (Scenario, error) {
	sc := Scenario{Rate: o.rate, Duration: o.duration.Seconds(),
		Description: fmt.Sprintf("GET /v1/datasets/{id}, GET /v1/datasets, GET /v1/jobs in turn at %g req/s for %s over %d datasets and %d jobs (target: p99 < 5 ms, 100%% success)",
			o.rate, o.duration, seedDatasets, seedJobs)}
	c := newClient(st.URL)
	ready, err := c.readyDataset(ctx, sample)
	if err != nil {
		return sc, err
	}
	datasets := []string{ready}
	for i := 1; i < seedDatasets; i++ {
		var created struct{ Dataset struct{ ID string } }
		body := fmt.Appendf(nil, `{"name":"benchload %d","size_bytes":1000}`, i)
		if err := c.do(ctx, "POST", "/v1/datasets", nil, body, &created); err != nil {
			return sc, err
		}
		datasets = append(datasets, created.Dataset.ID)
	}
	jobs, err := seedJobIDs(ctx, c, ready, "benchload-seed", seedJobs)
	if err != nil {
		return sc, err
	}
	// Let the dispatcher finish with the seeded jobs before the load.
	if _, err := st.waitSubmitted(ctx, jobs, time.Minute); err != nil {
		return sc, err
	}

	const (
		getDataset   = "GET /v1/datasets/{id}"
		listDatasets = "GET /v1/datasets"
		listJobs     = "GET /v1/jobs"
	)
	var n atomic.Uint64
	hdr := authHeader()
	tr := func(t *vegeta.Target) error {
		i := n.Add(1) - 1
		t.Method, t.Header = "GET", hdr
		switch i % 3 {
		case 0:
			t.URL = st.URL + "/v1/datasets/" + datasets[(i/3)%uint64(len(datasets))]
		case 1:
			t.URL = st.URL + "/v1/datasets"
		default:
			t.URL = st.URL + "/v1/jobs"
		}
		return nil
	}
	sc.LoadAverage[0] = loadAverage()
	finish := st.profile(ctx, o.profile, "reads", o.duration)
	results := attack(ctx, newAttacker(), tr, perSecond(o.rate), o.duration, "reads")
	sc.LoadAverage[1] = loadAverage()
	sc.Profiles = finish()

	byRoute := map[string][]*vegeta.Result{}
	for _, r := range results {
		route := getDataset
		switch strings.TrimPrefix(r.URL, st.URL) {
		case "/v1/datasets":
			route = listDatasets
		case "/v1/jobs":
			route = listJobs
		}
		byRoute[route] = append(byRoute[route], r)
	}
	for _, route := range []string{getDataset, listDatasets, listJobs} {
		sc.Endpoints = append(sc.Endpoints, summarize(route, byRoute[route]))
	}
	sc.Overall = summarize("all reads", results)
	sc.Checks = []Check{sentRate(sc.Overall, o.rate), allSucceeded(sc.Overall), p99Under(sc.Overall, 5*time.Millisecond)}
	return sc, nil
}

// The performance checks.
func sentRate(s Stats, rate float64) Check {
	return target("requests sent per second", fmt.Sprintf("%.1f", s.Rate), fmt.Sprintf("≥ %.1f", 0.98*rate), s.Rate >= 0.98*rate)
}

func allSucceeded(s Stats) Check {
	return target("success", fmt.Sprintf("%.2f%%", 100*s.Success), "100%", s.Success == 1)
}

func p99Under(s Stats, d time.Duration) Check {
	return target("p99 latency", s.P99.String(), "< "+ms(d).String(), time.Duration(s.P99) < d)
}

// jobsScenario: job creation with distinct Idempotency-Keys at a constant
// rate, then the stored, enqueued and submitted counts.
func jobsScenario(ctx context.Context, st *stack, o options, sample []byte) (Scenario, error) {
	sc := Scenario{Rate: o.jobRate, Duration: o.duration.Seconds(),
		Description: fmt.Sprintf("POST /v1/jobs with distinct Idempotency-Keys at %g req/s for %s; every job stored, enqueued exactly once, submitted once",
			o.jobRate, o.duration)}
	c := newClient(st.URL)
	ready, err := c.readyDataset(ctx, sample)
	if err != nil {
		return sc, err
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	body := jobBody(ready)
	var (
		mu   sync.Mutex
		keys []string
		n    atomic.Uint64
	)
	tr := func(t *vegeta.Target) error {
		key := fmt.Sprintf("benchload-%s-%06d", run, n.Add(1))
		mu.Lock()
		keys = append(keys, key)
		mu.Unlock()
		t.Method, t.URL, t.Body = "POST", st.URL+"/v1/jobs", body
		t.Header = authHeader()
		t.Header.Set("Idempotency-Key", key)
		t.Header.Set("Content-Type", "application/json")
		return nil
	}
	sc.LoadAverage[0] = loadAverage()
	finish := st.profile(ctx, o.profile, "jobs", o.duration)
	results := attack(ctx, newAttacker(), tr, perSecond(o.jobRate), o.duration, "jobs")
	sc.LoadAverage[1] = loadAverage()
	sc.Profiles = finish()
	sc.Overall = summarize("POST /v1/jobs", results)
	sc.Checks = []Check{sentRate(sc.Overall, o.jobRate), allSucceeded(sc.Overall)}

	created := 0
	for _, r := range results {
		if r.Code == http.StatusCreated {
			created++
		}
	}
	listed, err := c.allJobIDs(ctx)
	if err != nil {
		return sc, err
	}
	var stored []string
	for _, k := range keys {
		if id := idempotentJobID(k); listed[id] {
			stored = append(stored, id)
		}
	}
	// The dispatcher drains the queue meanwhile; the counts are taken once
	// it submitted every stored job (or gave up waiting).
	cnt, err := st.waitSubmitted(ctx, stored, 2*time.Minute)
	if cnt == nil {
		return sc, err
	}
	var sentOnce, sentTwice, flagged, submittedOnce, submittedTwice int
	for _, id := range stored {
		switch s := cnt.Sends[id]; {
		case s == 1:
			sentOnce++
		case s > 1:
			sentTwice++
		}
		switch s := cnt.Submissions[id]; {
		case s == 1:
			submittedOnce++
		case s > 1:
			submittedTwice++
		}
		if cnt.Enqueued[id] {
			flagged++
		}
	}
	sc.Checks = append(sc.Checks,
		correct("requests answered 201 Created", created, len(keys)),
		correct("jobs stored (listed by GET /v1/jobs)", len(stored), len(keys)),
		correct("jobs the queue accepted exactly once", sentOnce, len(keys)),
		correct("jobs the queue accepted more than once", sentTwice, 0),
		correct("jobs stored with enqueued = true", flagged, len(keys)),
		correct("jobs submitted to RunPod exactly once", submittedOnce, len(keys)),
		correct("jobs submitted to RunPod more than once", submittedTwice, 0),
		correct("messages in the dead-letter queue", cnt.DeadLetters, 0),
	)
	return sc, nil
}

// cbJob is one running job of the callback scenario.
type cbJob struct {
	id      string
	attempt int
	secret  []byte
	results []*vegeta.Result
}

// target builds one signed callback of the job.
func (j *cbJob) target(url string, seq int64, p contract.Payload) (vegeta.Target, error) {
	now := time.Now()
	cb, err := contract.NewCallback(j.id, j.attempt, seq, now, p)
	if err != nil {
		return vegeta.Target{}, err
	}
	body, err := json.Marshal(cb)
	if err != nil {
		return vegeta.Target{}, err
	}
	h := contract.SignedHeaders(j.secret, contract.WebhookID(j.id, j.attempt, seq), now, body)
	h.Set("Content-Type", "application/json")
	return vegeta.Target{Method: "POST", URL: url, Body: body, Header: h}, nil
}

// progressStep is the step of the progress callback with seq (seq 1 is
// the started callback).
func progressStep(seq int64) int64 { return seq - 1 }

func progress(step int64) *contract.Progress {
	const total = 1_000_000
	return &contract.Progress{Step: step, TotalSteps: total, Epoch: float64(step) / total, Loss: 2 - float64(step)/total,
		LearningRate: 1e-4, TokensPerSecond: 2710.4, GPUMemoryBytes: 49034825728}
}

// callbacksScenario: running jobs send signed progress callbacks, each job
// in order, all jobs at once; then the stored points and job states.
func callbacksScenario(ctx context.Context, st *stack, o options, sample []byte) (Scenario, error) {
	sc := Scenario{Rate: o.callbackRate, Duration: o.callbackDuration.Seconds(),
		Description: fmt.Sprintf("%d running jobs send signed progress callbacks in order, %g/s together, for %s (target: ≥ %g/s; none lost, none out of order, no state regression)",
			o.callbackJobs, o.callbackRate, o.callbackDuration, o.callbackRate)}
	c := newClient(st.URL)
	ready, err := c.readyDataset(ctx, sample)
	if err != nil {
		return sc, err
	}
	ids, err := seedJobIDs(ctx, c, ready, "benchload-callbacks", o.callbackJobs)
	if err != nil {
		return sc, err
	}
	if _, err := st.waitSubmitted(ctx, ids, time.Minute); err != nil {
		return sc, err
	}
	url := pipeline.WorkerCallbackURL(st.URL, owner)
	jobs := make([]*cbJob, len(ids))
	for i, id := range ids {
		// Submitted: the dispatcher recorded the run and its attempt.
		var j jobView
		err := poll(ctx, time.Minute, "job "+id+" to be submitted", func() (bool, error) {
			var err error
			j, err = c.job(ctx, id)
			return j.Status == "submitted", err
		})
		if err != nil {
			return sc, err
		}
		jobs[i] = &cbJob{id: id, attempt: j.Attempt, secret: contract.DeriveSecret(st.secret, id)}
		// The worker starts: seq 1.
		t, err := jobs[i].target(url, 1, &contract.Started{WorkerID: "benchload", RunPodJobID: "benchload", WorkerVersion: "benchload"})
		if err != nil {
			return sc, err
		}
		if err := c.do(ctx, t.Method, strings.TrimPrefix(t.URL, st.URL), t.Header, t.Body, nil); err != nil {
			return sc, fmt.Errorf("started callback: %w", err)
		}
		if j, err = c.job(ctx, id); err != nil || j.Status != "running" {
			return sc, fmt.Errorf("job %s is %q after its started callback (%v), want running", id, j.Status, err)
		}
	}

	// Each job sends from one vegeta worker, so its callbacks go one after
	// the other in seq order; the jobs start staggered over one period.
	perJob := o.callbackRate / float64(len(jobs))
	period := time.Duration(float64(time.Second) / perJob)
	sc.LoadAverage[0] = loadAverage()
	finish := st.profile(ctx, o.profile, "callbacks", o.callbackDuration)
	var wg sync.WaitGroup
	for i, j := range jobs {
		seq := int64(1)
		tr := func(t *vegeta.Target) error {
			seq++
			var err error
			*t, err = j.target(url, seq, progress(progressStep(seq)))
			return err
		}
		wg.Go(func() {
			select {
			case <-time.After(period * time.Duration(i) / time.Duration(len(jobs))):
			case <-ctx.Done():
				return
			}
			atk := newAttacker(vegeta.Workers(1), vegeta.MaxWorkers(1))
			j.results = attack(ctx, atk, tr, perSecond(perJob), o.callbackDuration, j.id)
		})
	}
	wg.Wait()
	sc.LoadAverage[1] = loadAverage()
	sc.Profiles = finish()

	var all []*vegeta.Result
	var sent, acked, stored, lost, unexpected, notLast, notRunning, stops int
	for _, j := range jobs {
		all = append(all, j.results...)
		// A worker's result Seq counts its requests from 0: request k sent seq k+2, step k+1.
		sentSteps := map[int]bool{}
		ackedSteps := map[int]bool{}
		last := 0
		for _, r := range j.results {
			step := int(progressStep(int64(r.Seq) + 2))
			sentSteps[step] = true
			last = max(last, step)
			if r.Code == http.StatusOK && r.Error == "" {
				ackedSteps[step] = true
				var answer api.CallbackAnswer
				if json.Unmarshal(r.Body, &answer) == nil && answer.Action == "stop" {
					stops++
				}
			}
		}
		steps, err := c.metricSteps(ctx, j.id, j.attempt)
		if err != nil {
			return sc, err
		}
		have := map[int]bool{}
		for _, s := range steps {
			have[s] = true
			if !sentSteps[s] {
				unexpected++
			}
		}
		for s := range ackedSteps {
			if !have[s] {
				lost++
			}
		}
		sent, acked, stored = sent+len(j.results), acked+len(ackedSteps), stored+len(steps)
		v, err := c.job(ctx, j.id)
		if err != nil {
			return sc, err
		}
		if v.Progress == nil || v.Progress.Step != last || v.Progress.Attempt != j.attempt {
			notLast++
		}
		if v.Status != "running" || v.Attempt != j.attempt {
			notRunning++
		}
	}
	sc.Overall = summarize("POST /v1/callbacks/worker", all)
	// Each job waits for its answers, so the rate sent is the throughput.
	sc.Checks = append(sc.Checks, allSucceeded(sc.Overall),
		// A constant-rate attacker never exceeds the rate it offers: the
		// stack keeps up when it acknowledges (almost) all of it, the same
		// 98 % rule as the read scenario's.
		target("throughput (acknowledged callbacks/s)", fmt.Sprintf("%.1f", sc.Overall.Throughput), fmt.Sprintf("≥ %.1f (98%% of %g offered)", 0.98*o.callbackRate, o.callbackRate), sc.Overall.Throughput >= 0.98*o.callbackRate),
		storedCheck(stored, acked, sent),
		correct("acknowledged points lost", lost, 0),
		correct("stored points never sent", unexpected, 0),
		correct("jobs whose progress is not the last step sent", notLast, 0),
		correct("jobs no longer running (state regression)", notRunning, 0),
		correct("callbacks answered stop", stops, 0),
	)
	return sc, nil
}

// storedCheck: every acknowledged point is stored, and nothing more than
// was sent (a request that failed at the client may or may not have been
// applied). With every request acknowledged, stored must equal sent.
func storedCheck(stored, acked, sent int) Check {
	want := strconv.Itoa(sent)
	if acked != sent {
		want = fmt.Sprintf("%d..%d", acked, sent)
	}
	return Check{Name: "metric points stored (= sent)", Got: strconv.Itoa(stored), Want: want,
		OK: acked <= stored && stored <= sent, Kind: "correctness"}
}
