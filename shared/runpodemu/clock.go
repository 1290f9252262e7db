package runpodemu

import (
	"sync"
	"time"
)

// Clock tells the emulator the time. RunPod's clock-driven rules (ttl,
// executionTimeout, result retention, delayTime and executionTime) and the
// simulated worker's timestamps (sent_at, webhook-timestamp) read it; the
// simulation's pace (steps per second, retry intervals) is real time.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// ManualClock is a Clock that moves only when told to: advance it past a
// job's executionTimeout, ttl or result retention and the emulator applies
// the rule at its next sweep or API call.
type ManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewManualClock returns a clock stopped at t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{t: t} }

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
