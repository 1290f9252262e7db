package dynamo_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// A table written before the sharded layout keeps working: its unfinished
// jobs are listed from the old partitions, updates move them, and the
// migration moves the rest, once.
func TestATableWrittenBeforeShardingIsReadAndMigrated(t *testing.T) {
	t.Parallel()
	s, client := mustNewStoreClient(t)
	ctx := context.Background()
	legacy := map[string]pipeline.JobStatus{}
	for i := 1; i <= 25; i++ {
		st := []pipeline.JobStatus{pipeline.JobRunning, pipeline.JobQueued, pipeline.JobCompleted}[i%3]
		j := newJob(fmt.Sprintf("owner%d", i%4), i, st)
		j.Version = 1
		item, err := dynamo.LegacyJobItem(j)
		must(t, err)
		_, err = client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.Table()), Item: item})
		must(t, err)
		if !st.Terminal() {
			legacy[j.Owner+"/"+j.ID] = st
		}
	}
	// And some written by the new code.
	for i := 101; i <= 105; i++ {
		must(t, s.CreateJob(ctx, newJob("newowner", i, pipeline.JobRunning)))
	}
	listAll := func(st pipeline.JobStatus) []string {
		t.Helper()
		var got []string
		cursor := ""
		for pages := 0; pages < 100; pages++ {
			list, next, err := s.ListJobsByStatus(ctx, st, pipeline.Page{Limit: 3, Cursor: cursor})
			must(t, err)
			for _, j := range list {
				got = append(got, j.Owner+"/"+j.ID)
			}
			if cursor = next; cursor == "" {
				break
			}
		}
		sort.Strings(got)
		return got
	}
	want := func(st pipeline.JobStatus, extra ...string) []string {
		out := append([]string(nil), extra...)
		for k, v := range legacy {
			if v == st {
				out = append(out, k)
			}
		}
		sort.Strings(out)
		return out
	}
	newRunning := []string{"newowner/job_0101", "newowner/job_0102", "newowner/job_0103", "newowner/job_0104", "newowner/job_0105"}
	check := func(when string) {
		t.Helper()
		if got, w := listAll(pipeline.JobRunning), want(pipeline.JobRunning, newRunning...); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s: running jobs = %v, want %v (each once)", when, got, w)
		}
		if got, w := listAll(pipeline.JobQueued), want(pipeline.JobQueued); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s: queued jobs = %v, want %v", when, got, w)
		}
	}
	check("before the migration")

	rep, err := s.MigrateActiveShards(ctx, nil)
	must(t, err)
	if rep.Moved != len(legacy) || rep.Gone != 0 {
		t.Errorf("MigrateActiveShards = %+v, want %d moved", rep, len(legacy))
	}
	check("after the migration")
	// No job holds the old keys any more.
	out, err := client.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(s.Table())})
	must(t, err)
	for _, item := range out.Items {
		if _, ok := item["active_sk"]; ok {
			t.Errorf("item %v still holds active_sk", item["sk"])
		}
		if pk, ok := item["active_pk"].(*types.AttributeValueMemberS); ok && strings.Count(pk.Value, "#") != 2 {
			t.Errorf("item %v is still in the unsharded partition %s", item["sk"], pk.Value)
		}
	}
	again, err := s.MigrateActiveShards(ctx, nil)
	must(t, err)
	if again.Moved != 0 {
		t.Errorf("a second migration moved %d jobs, want 0", again.Moved)
	}
}
