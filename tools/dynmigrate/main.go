// Command dynmigrate moves a deployed table's unfinished jobs into the
// sharded layout of 2026-12-06 (dynamo.Store.MigrateActiveShards). Run it
// once after deploying that layout, with credentials that may read and
// write the table; running it again moves nothing. The table works
// before, during and after: readers walk the old partitions too.
//
//	go run ./tools/dynmigrate -table NAME [-region REGION]
//
// Standard AWS configuration applies (AWS_PROFILE, AWS_REGION, and
// AWS_ENDPOINT_URL_DYNAMODB for an emulator).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dynmigrate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dynmigrate", flag.ContinueOnError)
	table := fs.String("table", os.Getenv("BRIGHTRUN_TABLE"), "the table's name (default $BRIGHTRUN_TABLE)")
	region := fs.String("region", "", "the table's region (default: the AWS configuration's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *table == "" {
		return errors.New("name the table: -table NAME")
	}
	var opts []func(*config.LoadOptions) error
	if *region != "" {
		opts = append(opts, config.WithRegion(*region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("load AWS configuration: %w", err)
	}
	// The cursor key signs only this run's own page cursors.
	key := make([]byte, dynamo.MinCursorKeyLen)
	rand.Read(key)
	s, err := dynamo.New(dynamodb.NewFromConfig(cfg), dynamo.Options{Table: *table, CursorKey: key})
	if err != nil {
		return err
	}
	rep, err := s.MigrateActiveShards(ctx, func(owner, id string, st pipeline.JobStatus) {
		slog.Info("job moved to its shard", "owner", owner, "job_id", id, "status", st)
	})
	fmt.Printf("moved %d jobs, %d had ended or were deleted meanwhile\n", rep.Moved, rep.Gone)
	return err
}
