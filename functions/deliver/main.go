// Command deliver is the webhook delivery Lambda function: SQS-triggered
// by the webhook queue, it fans outbound events out to their owners'
// endpoints and delivers them, signed, on the retry schedule (a message
// not due is hidden until its next try and reported as a batch item
// failure, so that Lambda keeps it).
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/brightrun/brightrun/shared/awsapp"
)

func main() {
	slog.SetDefault(lambdacontext.NewLogger())
	if err := run(context.Background()); err != nil {
		slog.Error("start-up failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	app, err := awsapp.Load(ctx, os.Getenv, awsapp.Store|awsapp.Webhooks)
	if err != nil {
		return err
	}
	svc := app.Webhooks()
	if svc == nil {
		return errors.New("the webhooks service was not built")
	}
	lambda.Start(svc.HandleSQSEvent)
	return nil
}
