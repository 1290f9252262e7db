// Command reconcile is the reconcile Lambda function: on a schedule it
// confirms stale jobs with RunPod, ends crash loops and overspending jobs,
// and enqueues jobs that were stored but never enqueued.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/brightrun/brightrun/shared/awsapp"
	"github.com/brightrun/brightrun/shared/reconcile"
)

func main() {
	slog.SetDefault(lambdacontext.NewLogger())
	if err := run(context.Background()); err != nil {
		slog.Error("start-up failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	app, err := awsapp.Load(ctx, os.Getenv, awsapp.Store|awsapp.Blobs|awsapp.Queue|awsapp.GPU|awsapp.Webhooks)
	if err != nil {
		return err
	}
	r := app.Reconciler()
	lambda.Start(func(ctx context.Context) (reconcile.Report, error) { return r.Run(ctx) })
	return nil
}
