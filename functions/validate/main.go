// Command validate is the validate Lambda function: for each S3
// ObjectCreated event of a dataset upload it validates the file, counts its
// tokens exactly and marks the dataset ready or invalid. It reads the file
// in parts with ranged GETs and validates them on every vCPU its memory
// setting buys (template.yaml says why 10,240 MB).
package main

import (
	"context"
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
	app, err := awsapp.Load(ctx, os.Getenv, awsapp.Store|awsapp.Blobs|awsapp.Webhooks)
	if err != nil {
		return err
	}
	v, err := app.Validator()
	if err != nil {
		return err
	}
	lambda.Start(v.HandleS3Event)
	return nil
}
