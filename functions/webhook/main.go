// Command webhook is the webhook Lambda function: signed worker callbacks and RunPod's completion webhook (HTTP API, no JWT).
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
	app, err := awsapp.Load(ctx, os.Getenv, awsapp.Store|awsapp.Blobs|awsapp.GPU|awsapp.Callbacks|awsapp.Webhooks)
	if err != nil {
		return err
	}
	lambda.Start(httpadapter.NewV2(app.API().Handler(httpapi.FnWebhook)).ProxyWithContext)
	return nil
}
