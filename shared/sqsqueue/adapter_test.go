package sqsqueue_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/sqsqueue"
)

func TestBodiesRoundTripWhateverTheirBytes(t *testing.T) {
	t.Parallel()
	q := MustNewQueue(t)
	ctx := context.Background()
	tests := []struct {
		name string
		body []byte
	}{
		{"JSON", []byte(`{"job_id":"job_1","note":"naïve ☃"}`)},
		{"invalid UTF-8", []byte{0xff, 0xfe, 'a'}},
		{"control characters", []byte("a\x00b\x1fc")},
		{"an empty body", []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := q.Send(ctx, pipeline.Message{Body: tt.body, Attributes: map[string]string{"kind": "test"}}); err != nil {
				t.Fatal(err)
			}
			got, err := q.Receive(ctx, 1, time.Minute, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !bytes.Equal(got[0].Body, tt.body) || len(got[0].Attributes) != 1 || got[0].Attributes["kind"] != "test" {
				t.Fatalf("Receive = %+v, want body %q and only the attribute kind=test", got, tt.body)
			}
			if err := q.Delete(ctx, got[0].Receipt); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRefusesWhatSQSCannotCarry(t *testing.T) {
	t.Parallel()
	q := MustNewQueue(t)
	ctx := context.Background()
	many := map[string]string{}
	for i := 0; i < 10; i++ {
		many[fmt.Sprintf("a%d", i)] = "v"
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"ten attributes", func() error { _, err := q.Send(ctx, pipeline.Message{Body: []byte("x"), Attributes: many}); return err }},
		{"an empty attribute value", func() error {
			_, err := q.Send(ctx, pipeline.Message{Body: []byte("x"), Attributes: map[string]string{"a": ""}})
			return err
		}},
		{"the reserved attribute", func() error {
			_, err := q.Send(ctx, pipeline.Message{Body: []byte("x"), Attributes: map[string]string{"brightrun-body-encoding": "base64"}})
			return err
		}},
		{"a batch of 11", func() error { _, err := q.Receive(ctx, 11, time.Second, 0); return err }},
		{"a batch of 0", func() error { _, err := q.Receive(ctx, 0, time.Second, 0); return err }},
		{"a negative visibility", func() error { _, err := q.Receive(ctx, 1, -time.Second, 0); return err }},
		{"an empty receipt", func() error { return q.Delete(ctx, "") }},
		{"a visibility over 12 hours", func() error { return q.ChangeVisibility(ctx, "r", 13*time.Hour) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pipeline.ErrorCode(tt.call()); got != pipeline.EInvalid {
				t.Errorf("error code = %q, want %q", got, pipeline.EInvalid)
			}
		})
	}
}

// Reading the dead-letter queue leaves its messages there.
func TestDeadLettersAreReadNotTaken(t *testing.T) {
	t.Parallel()
	emu := awstest.Moto(t)
	client := sqs.NewFromConfig(emu.Config)
	ctx := context.Background()
	opts, err := sqsqueue.CreateQueues(ctx, client, awstest.UniqueName("jobs"), maxReceives)
	if err != nil {
		t.Fatal(err)
	}
	q, err := sqsqueue.New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Put messages straight into the dead-letter queue.
	dlq, err := sqsqueue.New(client, sqsqueue.Options{QueueURL: opts.DeadLetterURL})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		if _, err := dlq.Send(ctx, pipeline.Message{Body: []byte(fmt.Sprintf("dead %d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	for read := 1; read <= 2; read++ {
		got, err := q.DeadLetters(ctx, 20)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 12 {
			t.Errorf("DeadLetters read %d = %d messages, want all 12", read, len(got))
		}
	}
	if got, err := q.DeadLetters(ctx, 5); err != nil || len(got) != 5 {
		t.Errorf("DeadLetters(5) = %d messages, %v; want 5", len(got), err)
	}
	noDLQ, _ := sqsqueue.New(client, sqsqueue.Options{QueueURL: opts.QueueURL})
	if _, err := noDLQ.DeadLetters(ctx, 1); pipeline.ErrorCode(err) != pipeline.EInvalid {
		t.Errorf("DeadLetters without a dead-letter URL: %v, want %s", err, pipeline.EInvalid)
	}
}

// fakeClient answers every call with err.
type fakeClient struct{ err error }

func (f fakeClient) SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return nil, f.err
}
func (f fakeClient) ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	return nil, f.err
}
func (f fakeClient) DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	return nil, f.err
}
func (f fakeClient) ChangeMessageVisibility(context.Context, *sqs.ChangeMessageVisibilityInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	return nil, f.err
}

// Errors the emulator does not produce on demand, translated as SQS sends them.
func TestAWSErrorsTranslate(t *testing.T) {
	tests := []struct {
		name string
		code string
		want string
	}{
		{"a stale receipt", "MessageNotInflight", pipeline.EConflict},
		{"a malformed receipt", "ReceiptHandleIsInvalid", pipeline.EInvalid},
		{"throttling", "RequestThrottled", pipeline.EUnavailable},
		{"too many in flight", "OverLimit", pipeline.EUnavailable},
		{"a missing queue", "AWS.SimpleQueueService.NonExistentQueue", pipeline.EInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := sqsqueue.New(fakeClient{&smithy.GenericAPIError{Code: tt.code}}, sqsqueue.Options{QueueURL: "u"})
			if err != nil {
				t.Fatal(err)
			}
			if got := pipeline.ErrorCode(q.ChangeVisibility(context.Background(), "r", time.Second)); got != tt.want {
				t.Errorf("ChangeVisibility error code = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReceiveWithZeroVisibilityLeavesTheMessageVisible(t *testing.T) {
	t.Parallel()
	q := MustNewQueue(t)
	ctx := context.Background()
	if _, err := q.Send(ctx, pipeline.Message{Body: []byte("peek")}); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		got, err := q.Receive(ctx, 1, 0, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ReceiveCount != want {
			t.Fatalf("Receive %d with zero visibility = %+v, want the message with receive count %d", want, got, want)
		}
	}
}
