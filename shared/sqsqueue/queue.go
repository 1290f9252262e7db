// Package sqsqueue is pipeline.Queue over an SQS standard queue and its
// dead-letter queue (a redrive policy moves a message there after
// maxReceiveCount deliveries).
package sqsqueue

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// Client is the part of the SQS API the queue uses; *sqs.Client implements it.
type Client interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Options name the queues.
type Options struct {
	// QueueURL is the queue's URL (suggested setting: BRIGHTRUN_QUEUE_URL).
	QueueURL string
	// DeadLetterURL is its dead-letter queue's URL
	// (suggested setting: BRIGHTRUN_DEAD_LETTER_URL); empty when the caller
	// never reads it.
	DeadLetterURL string
}

// Queue is pipeline.Queue over SQS.
type Queue struct {
	client Client
	opts   Options
}

var _ pipeline.Queue = (*Queue)(nil)

// New returns the queue at opts.QueueURL.
func New(client Client, opts Options) (*Queue, error) {
	if client == nil {
		return nil, errors.New("sqsqueue: no client")
	}
	if opts.QueueURL == "" {
		return nil, errors.New("sqsqueue: no queue URL")
	}
	return &Queue{client: client, opts: opts}, nil
}

// SQS limits.
const (
	maxAttributes    = 10
	maxBatch         = 10
	maxWait          = 20 * time.Second
	maxVisibility    = 12 * time.Hour
	encodingAttr     = "brightrun-body-encoding" // set to base64 when the body is not SQS text
	receiveCountAttr = types.MessageSystemAttributeNameApproximateReceiveCount
)

// seconds rounds d up to whole seconds, as SQS counts them.
func seconds(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	return int32((d + time.Second - 1) / time.Second)
}

// Send enqueues m; attributes become String message attributes. A body
// that SQS cannot carry as text (invalid UTF-8, control characters) is sent
// base64-encoded and decoded on receipt.
func (q *Queue) Send(ctx context.Context, m pipeline.Message) (string, error) {
	if len(m.Attributes) > maxAttributes-1 {
		return "", pipeline.Errorf(pipeline.EInvalid, "a message may have at most %d attributes, got %d", maxAttributes-1, len(m.Attributes))
	}
	attrs := make(map[string]types.MessageAttributeValue, len(m.Attributes)+1)
	for k, v := range m.Attributes {
		if k == encodingAttr {
			return "", pipeline.Errorf(pipeline.EInvalid, "attribute name %q is reserved", k)
		}
		if v == "" {
			return "", pipeline.Errorf(pipeline.EInvalid, "attribute %q is empty: SQS refuses empty attribute values", k)
		}
		attrs[k] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	body := string(m.Body)
	if !sqsText(m.Body) {
		body = base64.StdEncoding.EncodeToString(m.Body)
		attrs[encodingAttr] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String("base64")}
	}
	out, err := q.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(q.opts.QueueURL),
		MessageBody:       aws.String(body),
		MessageAttributes: attrs,
	})
	if err != nil {
		return "", translate(err, "send message")
	}
	return aws.ToString(out.MessageId), nil
}

// sqsText reports whether b is a body SQS accepts as it is: non-empty
// UTF-8 of #x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to
// #x10FFFF.
func sqsText(b []byte) bool {
	if len(b) == 0 || !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}

// Receive returns up to max visible messages, long-polling up to wait
// (in rounds of at most SQS's 20 seconds) for the first, and hides them
// for visibility (rounded up to whole seconds).
func (q *Queue) Receive(ctx context.Context, max int, visibility, wait time.Duration) ([]pipeline.Delivery, error) {
	if max <= 0 || max > maxBatch {
		return nil, pipeline.Errorf(pipeline.EInvalid, "max must be between 1 and %d, got %d", maxBatch, max)
	}
	if visibility < 0 || visibility > maxVisibility {
		return nil, pipeline.Errorf(pipeline.EInvalid, "visibility must be between 0 and %s, got %s", maxVisibility, visibility)
	}
	deadline := time.Now().Add(wait)
	for {
		w := time.Until(deadline)
		if w > maxWait {
			w = maxWait
		}
		got, err := q.receive(ctx, q.opts.QueueURL, max, seconds(visibility), seconds(w))
		if err == nil && visibility == 0 {
			err = q.release(ctx, q.opts.QueueURL, got)
		}
		if err != nil || len(got) > 0 || time.Until(deadline) <= 0 {
			return got, err
		}
	}
}

// release makes received messages visible again at once.
func (q *Queue) release(ctx context.Context, url string, list []pipeline.Delivery) error {
	for _, d := range list {
		_, err := q.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(url), ReceiptHandle: aws.String(d.Receipt), VisibilityTimeout: 0,
		})
		if err != nil {
			return translate(err, "release message")
		}
	}
	return nil
}

// receive makes one ReceiveMessage call. The SDK leaves a zero
// VisibilityTimeout or WaitTimeSeconds out of the request, and SQS then
// uses the queue's defaults: a zero visibility is sent as one second (and
// Receive releases the messages at once), and a zero wait relies on the
// queue's ReceiveMessageWaitTimeSeconds being 0, its default.
func (q *Queue) receive(ctx context.Context, url string, max int, visibility, wait int32) ([]pipeline.Delivery, error) {
	if visibility == 0 {
		visibility = 1
	}
	out, err := q.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(url),
		MaxNumberOfMessages:         int32(max),
		VisibilityTimeout:           visibility,
		WaitTimeSeconds:             wait,
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{receiveCountAttr},
	})
	if err != nil {
		return nil, translate(err, "receive messages")
	}
	list := make([]pipeline.Delivery, 0, len(out.Messages))
	for _, m := range out.Messages {
		d, err := delivery(m)
		if err != nil {
			return nil, err
		}
		list = append(list, d)
	}
	return list, nil
}

func delivery(m types.Message) (pipeline.Delivery, error) {
	d := pipeline.Delivery{
		ID:      aws.ToString(m.MessageId),
		Body:    []byte(aws.ToString(m.Body)),
		Receipt: aws.ToString(m.ReceiptHandle),
	}
	if n, err := strconv.Atoi(m.Attributes[string(receiveCountAttr)]); err == nil {
		d.ReceiveCount = n
	}
	for k, v := range m.MessageAttributes {
		if k == encodingAttr {
			body, err := base64.StdEncoding.DecodeString(string(d.Body))
			if err != nil {
				return d, fmt.Errorf("message %s: body marked base64 is not: %w", d.ID, err)
			}
			d.Body = body
			continue
		}
		if d.Attributes == nil {
			d.Attributes = map[string]string{}
		}
		d.Attributes[k] = aws.ToString(v.StringValue)
	}
	return d, nil
}

// Delete removes the message the receipt was issued for. Deleting a
// message already deleted succeeds, as in SQS.
func (q *Queue) Delete(ctx context.Context, receipt string) error {
	if receipt == "" {
		return pipeline.Errorf(pipeline.EInvalid, "a receipt is required")
	}
	_, err := q.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.opts.QueueURL), ReceiptHandle: aws.String(receipt)})
	return translate(err, "delete message")
}

// ChangeVisibility hides a received message for visibility from now (0
// releases it at once).
func (q *Queue) ChangeVisibility(ctx context.Context, receipt string, visibility time.Duration) error {
	if receipt == "" {
		return pipeline.Errorf(pipeline.EInvalid, "a receipt is required")
	}
	if visibility < 0 || visibility > maxVisibility {
		return pipeline.Errorf(pipeline.EInvalid, "visibility must be between 0 and %s, got %s", maxVisibility, visibility)
	}
	_, err := q.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(q.opts.QueueURL), ReceiptHandle: aws.String(receipt), VisibilityTimeout: seconds(visibility),
	})
	return translate(err, "change message visibility")
}

// DeadLetters returns up to max messages of the dead-letter queue without
// removing them: it receives them, hidden for a minute while it looks for
// more, then makes them visible again (each read counts as a receive
// there).
func (q *Queue) DeadLetters(ctx context.Context, max int) ([]pipeline.Delivery, error) {
	if q.opts.DeadLetterURL == "" {
		return nil, pipeline.Errorf(pipeline.EInvalid, "no dead-letter queue configured")
	}
	if max <= 0 {
		return nil, nil
	}
	var out []pipeline.Delivery
	var err error
	for len(out) < max {
		// A one-second long poll asks all of SQS's servers, not a sample.
		var got []pipeline.Delivery
		got, err = q.receive(ctx, q.opts.DeadLetterURL, min(max-len(out), maxBatch), 60, 1)
		if err != nil || len(got) == 0 {
			break
		}
		out = append(out, got...)
	}
	if rerr := q.release(context.WithoutCancel(ctx), q.opts.DeadLetterURL, out); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Receipt = ""
	}
	return out, nil
}

// translate turns an SQS error into the domain's; nil stays nil.
func translate(err error, what string) error {
	if err == nil {
		return nil
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch code := apiErr.ErrorCode(); code {
		case "ReceiptHandleIsInvalid", "InvalidParameterValue", "InvalidMessageContents", "InvalidAttributeName", "InvalidAttributeValue",
			"AWS.SimpleQueueService.InvalidParameterValue":
			return pipeline.Errorf(pipeline.EInvalid, "%s: %s", what, apiErr.ErrorMessage())
		case "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight":
			return pipeline.Errorf(pipeline.EConflict, "%s: the message is not in flight (its visibility timeout ended, or it was delivered again)", what)
		case "OverLimit", "RequestThrottled", "ThrottlingException", "KmsThrottled", "InternalError", "ServiceUnavailable":
			return &pipeline.Error{Code: pipeline.EUnavailable, Message: "the queue is busy: try again", Details: map[string]string{"aws_error": code}}
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// CreateQueues creates the queue name and its dead-letter queue name-dlq
// (14 days' retention), with a redrive policy that moves a message there
// after maxReceives deliveries, and returns their URLs. It is for tests and
// the local stack; the deployed queues come from the SAM template.
func CreateQueues(ctx context.Context, client *sqs.Client, name string, maxReceives int) (Options, error) {
	if maxReceives < 1 || maxReceives > 1000 {
		return Options{}, fmt.Errorf("maxReceives must be between 1 and 1000, got %d", maxReceives)
	}
	dlq, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName:  aws.String(name + "-dlq"),
		Attributes: map[string]string{string(types.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(14 * 24 * 3600)},
	})
	if err != nil {
		return Options{}, fmt.Errorf("create queue %s-dlq: %w", name, err)
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: dlq.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return Options{}, fmt.Errorf("read the ARN of %s-dlq: %w", name, err)
	}
	policy, err := json.Marshal(map[string]string{
		"deadLetterTargetArn": attrs.Attributes[string(types.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     strconv.Itoa(maxReceives),
	})
	if err != nil {
		return Options{}, err
	}
	main, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName:  aws.String(name),
		Attributes: map[string]string{string(types.QueueAttributeNameRedrivePolicy): string(policy)},
	})
	if err != nil {
		return Options{}, fmt.Errorf("create queue %s: %w", name, err)
	}
	return Options{QueueURL: aws.ToString(main.QueueUrl), DeadLetterURL: aws.ToString(dlq.QueueUrl)}, nil
}
