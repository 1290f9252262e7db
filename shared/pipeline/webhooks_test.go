package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// publisher records the events published to it, failing when err is set.
type publisher struct {
	mu     sync.Mutex
	events []pipeline.OutboundEvent
	err    error
}

func (p *publisher) Publish(ctx context.Context, e pipeline.OutboundEvent) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
	return p.err
}

func (p *publisher) types() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		out = append(out, e.Type)
	}
	return out
}

func newLifecycle(t *testing.T, events pipeline.EventPublisher, log *bytes.Buffer) *pipeline.Lifecycle {
	t.Helper()
	store := newStore(t)
	return &pipeline.Lifecycle{Store: store, JobLog: store, Events: events, Log: slog.New(slog.NewTextHandler(log, nil))}
}

func storedJob(t *testing.T, l *pipeline.Lifecycle, status pipeline.JobStatus, budget *float64) *pipeline.Job {
	t.Helper()
	now := time.Now().UTC()
	started := now.Add(-time.Hour)
	j := &pipeline.Job{ID: pipeline.NewID("job", now), Owner: "alice", DatasetID: "ds_1", BaseModel: "m", GPUType: "g", Preset: "fast",
		Status: status, Attempt: 1, RunPodID: "rp-1", StartedAt: &started, BudgetUSD: budget,
		Estimate: &pipeline.JobEstimate{PriceUSDPerSecond: 0.01}, CreatedAt: started, UpdatedAt: started}
	if err := l.Store.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestEachEndOfAJobPublishesItsEventOnce(t *testing.T) {
	tests := []struct {
		status pipeline.JobStatus
		want   string
	}{
		{pipeline.JobCompleted, pipeline.EventJobCompleted},
		{pipeline.JobFailed, pipeline.EventJobFailed},
		{pipeline.JobCancelled, pipeline.EventJobCancelled},
	}
	for _, tt := range tests {
		t.Run(string(tt.status), func(t *testing.T) {
			p := &publisher{}
			l := newLifecycle(t, p, &bytes.Buffer{})
			j := storedJob(t, l, pipeline.JobRunning, nil)
			for range 2 {
				if _, _, err := l.Finish(context.Background(), j, pipeline.Outcome{Status: tt.status}); err != nil {
					t.Fatal(err)
				}
			}
			if got := p.types(); len(got) != 1 || got[0] != tt.want {
				t.Fatalf("published %v, want [%s] (the second Finish ended nothing)", got, tt.want)
			}
			if e := p.events[0]; e.Owner != "alice" || e.Job == nil || e.Job.ID != j.ID || e.Job.Status != tt.status || e.Time.IsZero() {
				t.Errorf("event = %+v, want alice's job %s as it ended", e, j.ID)
			}
		})
	}
}

func TestAJobOverItsBudgetPublishesBudgetExceeded(t *testing.T) {
	p := &publisher{}
	l := newLifecycle(t, p, &bytes.Buffer{})
	budget := 1.0
	j := storedJob(t, l, pipeline.JobRunning, &budget)
	if _, did, err := l.EnforceBudget(context.Background(), j); err != nil || !did {
		t.Fatalf("EnforceBudget = %v, %v, want the cancel asked for", did, err)
	}
	if got := p.types(); len(got) != 1 || got[0] != pipeline.EventJobBudgetExceeded {
		t.Errorf("published %v, want [job.budget_exceeded]", got)
	}
}

func TestAFailedPublishIsLoggedAndTheTransitionStands(t *testing.T) {
	p := &publisher{err: errors.New("queue down")}
	var log bytes.Buffer
	l := newLifecycle(t, p, &log)
	j := storedJob(t, l, pipeline.JobRunning, nil)
	done, ended, err := l.Finish(context.Background(), j, pipeline.Outcome{Status: pipeline.JobCompleted})
	if err != nil || !ended || done.Status != pipeline.JobCompleted {
		t.Fatalf("Finish with a failing publisher = %v, %v, %v, want the job completed", done, ended, err)
	}
	stored, err := l.Store.GetJob(context.Background(), "alice", j.ID)
	if err != nil || stored.Status != pipeline.JobCompleted {
		t.Fatalf("stored job = %+v, %v, want completed", stored, err)
	}
	if !strings.Contains(log.String(), "publish webhook event") || !strings.Contains(log.String(), "queue down") {
		t.Errorf("log = %q, want the failed publish with its cause", log.String())
	}
	notes, _, _ := l.JobLog.ListNotifications(context.Background(), "alice", pipeline.Page{})
	if len(notes) != 1 {
		t.Errorf("notifications = %d, want the completion notice all the same", len(notes))
	}
}

func TestOutboundEventTypesAreValidAndNothingElseIs(t *testing.T) {
	for _, typ := range pipeline.OutboundEventTypes {
		if !pipeline.ValidEventType(typ) {
			t.Errorf("ValidEventType(%q) = false, want true", typ)
		}
	}
	for _, typ := range []string{"", "job", "job.exploded", "JOB.COMPLETED", "job.completed "} {
		if pipeline.ValidEventType(typ) {
			t.Errorf("ValidEventType(%q) = true, want false", typ)
		}
	}
}

func TestSigningSecretsIncludeThePreviousOneOnlyDuringItsOverlap(t *testing.T) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	until := now.Add(time.Hour)
	e := &pipeline.WebhookEndpoint{Secret: "new", PreviousSecret: "old", PreviousSecretExpiresAt: &until}
	tests := []struct {
		at   time.Time
		want int
	}{
		{now, 2}, {until.Add(-time.Nanosecond), 2}, {until, 1}, {until.Add(time.Hour), 1},
	}
	for _, tt := range tests {
		if got := e.SigningSecrets(tt.at); len(got) != tt.want || got[0] != "new" {
			t.Errorf("SigningSecrets(%s) = %v, want %d secrets, the new one first", tt.at, got, tt.want)
		}
	}
}
