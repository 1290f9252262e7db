package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// MigrateReport says what MigrateActiveShards did.
type MigrateReport struct {
	// Moved counts the jobs rewritten into their shard; Gone the listed
	// jobs that had been deleted or had ended meanwhile.
	Moved, Gone int
}

// MigrateActiveShards moves the unfinished jobs that a table written
// before 2026-12-06 keeps in active_by_created's unsharded partitions
// (JOB#<status>, with the dropped index's active_sk) into their shards
// (JOB#<status>#<00-15>): each is read and written back through
// UpdateJob, which writes the new keys and drops the old attribute, under
// the job's version, so a job changed meanwhile is read again. Readers
// walk the old partitions too, so the table works before, during and
// after; running it again finds nothing to move. log, when not nil, is
// told of each job moved.
func (s *Store) MigrateActiveShards(ctx context.Context, log func(owner, id string, status pipeline.JobStatus)) (MigrateReport, error) {
	var rep MigrateReport
	for _, st := range pipeline.JobStatuses {
		if st.Terminal() {
			continue
		}
		q := listQuery{index: indexActiveByCreated, hashAttr: attrActivePK, hash: jobKind.prefix + "#" + string(st),
			rangeAttr: attrListSK, scope: "migrate:" + string(st)}
		cursor := ""
		for {
			items, next, err := s.query(ctx, q, pipeline.Page{Cursor: cursor, Limit: pipeline.MaxPageSize})
			if err != nil {
				return rep, fmt.Errorf("list %s jobs to move: %w", st, err)
			}
			for _, item := range items {
				moved, err := s.moveToShard(ctx, item)
				if err != nil {
					return rep, err
				}
				if moved != nil {
					rep.Moved++
					if log != nil {
						log(moved.Owner, moved.ID, moved.Status)
					}
				} else {
					rep.Gone++
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	return rep, nil
}

// moveToShard rewrites one listed job under its current version; nil when
// the job is gone or ended (nothing to move).
func (s *Store) moveToShard(ctx context.Context, listed map[string]types.AttributeValue) (*pipeline.Job, error) {
	j, err := decodeJob(listed)
	if err != nil {
		return nil, err
	}
	for try := 0; try < maxMigrateTries; try++ {
		cur, err := s.GetJob(ctx, j.Owner, j.ID)
		if pipeline.ErrorCode(err) == pipeline.ENotFound {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read job %s/%s to move: %w", j.Owner, j.ID, err)
		}
		if cur.Status.Terminal() {
			return nil, nil
		}
		err = s.UpdateJob(ctx, cur)
		if pipeline.ErrorCode(err) == pipeline.EConflict {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("move job %s/%s to its shard: %w", j.Owner, j.ID, err)
		}
		return cur, nil
	}
	return nil, pipeline.Errorf(pipeline.EUnavailable, "job %s/%s kept changing: run the migration again", j.Owner, j.ID)
}

const maxMigrateTries = 10
