// Command dispatch is the dispatch Lambda function: SQS-triggered, it
// submits queued jobs to RunPod and reports partial batch failures.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

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
	app, err := awsapp.Load(ctx, os.Getenv, awsapp.Store|awsapp.Blobs|awsapp.GPU|awsapp.Callbacks|awsapp.Public|awsapp.Webhooks)
	if err != nil {
		return err
	}
	// The queue's redrive maxReceiveCount: the last try fails the job.
	maxAttempts, err := strconv.Atoi(os.Getenv("BRIGHTRUN_MAX_DISPATCH_ATTEMPTS"))
	if err != nil || maxAttempts < 1 {
		return fmt.Errorf("BRIGHTRUN_MAX_DISPATCH_ATTEMPTS must be a positive integer, got %q", os.Getenv("BRIGHTRUN_MAX_DISPATCH_ATTEMPTS"))
	}
	lambda.Start(app.Dispatcher(maxAttempts).HandleSQSEvent)
	return nil
}
