// Command jobs is the jobs Lambda function: create (idempotent), list, cancel jobs; events, metrics, artifacts, notifications (HTTP API).
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/brightrun/brightrun/shared/awsapp"
	"github.com/brightrun/brightrun/shared/httpapi"
)

func main() {
	slog.SetDefault(lambdacontext.NewLogger())
	if err := run(context.Background()); err != nil {
		slog.Error("start-up failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	app, err := awsapp.Load(ctx, os.Getenv, awsapp.Store|awsapp.Cursors|awsapp.Blobs|awsapp.Queue|awsapp.GPU|awsapp.Webhooks)
	if err != nil {
		return err
	}
	lambda.Start(httpadapter.NewV2(app.API().Handler(httpapi.FnJobs)).ProxyWithContext)
	return nil
}
