package runpod

import (
	"context"
	"time"
)

// WithSleep replaces the backoff sleep (tests record waits instead of waiting).
func WithSleep(f func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) { c.sleep = f }
}

// WithoutJitter makes backoff deterministic: half the computed delay.
func WithoutJitter() Option {
	return func(c *Client) { c.jitter = func(time.Duration) time.Duration { return 0 } }
}
