// Command imports is the import function: fed by the import queue, it
// copies an imported dataset from its https URL or allowed S3 object to
// where an upload lands (netguard.Cloud); the S3 event then has validate
// check it. The queue's last delivery ends a failing import invalid.
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
	app, err := awsapp.Load(ctx, os.Getenv, awsapp.Store|awsapp.Blobs|awsapp.ImportSources|awsapp.Webhooks)
	if err != nil {
		return err
	}
	// The import queue's redrive maxReceiveCount: the last try ends the
	// dataset invalid.
	maxAttempts, err := strconv.Atoi(os.Getenv("BRIGHTRUN_MAX_IMPORT_ATTEMPTS"))
	if err != nil || maxAttempts < 1 {
		return fmt.Errorf("BRIGHTRUN_MAX_IMPORT_ATTEMPTS must be a positive integer, got %q", os.Getenv("BRIGHTRUN_MAX_IMPORT_ATTEMPTS"))
	}
	lambda.Start(app.Importer(maxAttempts).HandleSQSEvent)
	return nil
}
