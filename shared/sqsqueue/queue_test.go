package sqsqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/queuetest"
	"github.com/brightrun/brightrun/shared/sqsqueue"
)

const maxReceives = 3

// MustNewQueue returns a queue and its dead-letter queue, fresh on the emulator.
func MustNewQueue(tb testing.TB) *sqsqueue.Queue {
	tb.Helper()
	emu := awstest.Moto(tb)
	client := sqs.NewFromConfig(emu.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts, err := sqsqueue.CreateQueues(ctx, client, awstest.UniqueName("jobs"), maxReceives)
	if err != nil {
		tb.Fatal(err)
	}
	q, err := sqsqueue.New(client, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return q
}

func TestQueueConformance(t *testing.T) {
	t.Parallel()
	awstest.Moto(t) // skip (or fail) once, here, when the emulator cannot start
	queuetest.Run(t, maxReceives, func(t *testing.T) pipeline.Queue { return MustNewQueue(t) })
}
