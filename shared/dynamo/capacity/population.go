package capacity

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Population is a set of running jobs and their workers, spread over
// owners as a busy service's are: a few owners run many jobs (Zipf).
type Population struct {
	Workers  []*Worker
	Owners   []string
	Datasets map[string]*pipeline.Dataset // by owner
	ids      *IDs
	rng      *rand.Rand
	zipf     *rand.Zipf
	template *pipeline.Job
}

// ZipfS is the skew of jobs over owners (rand.Zipf's s): with 1.1 over
// 1,000 owners the busiest runs about 13% of the jobs.
const ZipfS = 1.1

// NewPopulation creates a dataset for each of owners owners and n
// running jobs. The first job goes through the real lifecycle (created,
// dispatched, started, training, KeepCheckpoints checkpoints taken, as a
// job holds them from its third checkpoint on); the others are
// written by the store as copies of it with their own ids, owners, run
// ids and times (what the lifecycle would write for each, at the cost of
// one write instead of thirty). Each job was heard of within the last
// 10 s, and last checked with RunPod at checked() (nil: now).
func NewPopulation(ctx context.Context, e *Env, seed uint64, n, owners int, checked func() time.Time) (*Population, error) {
	p := &Population{Datasets: map[string]*pipeline.Dataset{}, ids: NewIDs(seed), rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	if owners > 1 {
		p.zipf = rand.NewZipf(p.rng, ZipfS, 1, uint64(owners-1))
	}
	now := e.Clock.Now()
	for i := range owners {
		o := Owner(i)
		p.Owners = append(p.Owners, o)
		d := NewDataset(p.ids, o, now)
		Validated(d, now)
		if err := e.Store.CreateDataset(ctx, d); err != nil {
			return nil, err
		}
		p.Datasets[o] = d
	}
	if n == 0 {
		return p, nil
	}
	first, err := p.Start(ctx, e, p.Owners[0])
	if err != nil {
		return nil, err
	}
	if err := progressAndCheckpoints(ctx, e, first, pipeline.KeepCheckpoints); err != nil {
		return nil, err
	}
	if p.template, err = e.Store.GetJob(ctx, first.Owner, first.JobID); err != nil {
		return nil, err
	}
	p.Workers = append(p.Workers, first)
	for range n - 1 {
		w, err := p.copyTemplate(ctx, e, now, checked)
		if err != nil {
			return nil, err
		}
		p.Workers = append(p.Workers, w)
	}
	return p, nil
}

// Owner draws the owner of a new job.
func (p *Population) Owner() string {
	if p.zipf == nil {
		return p.Owners[0]
	}
	return p.Owners[p.zipf.Uint64()]
}

// Float64 draws from the population's seeded source.
func (p *Population) Float64() float64 { return p.rng.Float64() }

func (p *Population) copyTemplate(ctx context.Context, e *Env, now time.Time, checkedAt func() time.Time) (*Worker, error) {
	t := p.template
	j := *t
	owner := p.Owner()
	created := now.Add(-time.Duration(p.rng.Float64() * float64(3*time.Hour)))
	j.ID, j.Owner, j.DatasetID = p.ids.New("job", created), owner, p.Datasets[owner].ID
	j.RunPodID = RunID(p.ids, created)
	heard := now.Add(-time.Duration(p.rng.Float64() * float64(10*time.Second)))
	checked := now
	if checkedAt != nil {
		checked = checkedAt()
	}
	started := created.Add(time.Minute)
	j.CreatedAt, j.UpdatedAt, j.HeartbeatAt, j.CheckedAt, j.StartedAt, j.EnqueuedAt = created, heard, &heard, &checked, &started, &created
	j.RunStartedAt = &started
	j.Runs = append([]pipeline.Run(nil), t.Runs...)
	for i := range j.Runs {
		j.Runs[i].RunID = j.RunPodID
	}
	j.Checkpoints = append([]pipeline.Checkpoint(nil), t.Checkpoints...)
	for i := range j.Checkpoints {
		c := &j.Checkpoints[i]
		c.Files = append([]pipeline.CheckpointFile(nil), c.Files...)
		for k := range c.Files {
			c.Files[k].Key = pipeline.CheckpointKey(j.Owner, j.ID, j.Attempt, c.Step, c.Files[k].Name)
		}
	}
	j.Version = 0
	if err := e.Store.CreateJob(ctx, &j); err != nil {
		return nil, fmt.Errorf("copy of the template job: %w", err)
	}
	w := NewWorker(&j)
	w.Seq = 1000
	if j.Progress != nil {
		w.Step = int64(j.Progress.Step)
	}
	return w, nil
}

// Start creates a job of owner through the API's and the dispatcher's
// calls and its worker's first callbacks (started, stages down to train).
func (p *Population) Start(ctx context.Context, e *Env, owner string) (*Worker, error) {
	d := p.Datasets[owner]
	if _, err := e.Store.GetDataset(ctx, owner, d.ID); err != nil {
		return nil, err
	}
	j, err := NewJob(p.ids, d, e.Clock.Now())
	if err != nil {
		return nil, err
	}
	if j, _, err = e.Jobs.Create(ctx, j); err != nil {
		return nil, err
	}
	if j, err = Dispatch(ctx, e, j, RunID(p.ids, e.Clock.Now())); err != nil {
		return nil, err
	}
	w := NewWorker(j)
	if _, err := w.Started(ctx, e); err != nil {
		return nil, err
	}
	return w, startStages(ctx, e, w)
}

// Heartbeat sends one progress callback of every job.
func (p *Population) Heartbeat(ctx context.Context, e *Env) error {
	for _, w := range p.Workers {
		if _, err := w.Progress(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// Finish ends w's job as a worker does: save and upload stages, the
// adapter's files, and completed (or, when fail, an out-of-memory
// failure).
func Finish(ctx context.Context, e *Env, w *Worker, fail bool) error {
	if fail {
		_, err := w.Failed(ctx, e, "oom")
		return err
	}
	for _, s := range []contract.Stage{contract.StageSave, contract.StageUpload} {
		if _, err := w.Stage(ctx, e, s); err != nil {
			return err
		}
	}
	for _, f := range adapterFiles {
		if _, err := w.Artifact(ctx, e, f.name, f.size); err != nil {
			return err
		}
	}
	_, err := w.Completed(ctx, e)
	e.Objects.Forget(w.JobID)
	return err
}

// Life runs a short slice of the workload on e: a dataset created and
// validated, a job created, dispatched and trained (progress callbacks,
// KeepCheckpoints+1 checkpoints, so that one is pruned), its adapter
// uploaded and the job completed; a second job that fails; a third left
// training; reconciliation passes. The same seed and start make the same
// calls.
func Life(ctx context.Context, e *Env, seed uint64) error {
	p := &Population{Datasets: map[string]*pipeline.Dataset{}, ids: NewIDs(seed), rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	owner := Owner(0)
	p.Owners = []string{owner}
	d := NewDataset(p.ids, owner, e.Clock.Now())
	if err := e.Store.CreateDataset(ctx, d); err != nil {
		return err
	}
	e.Clock.Advance(30 * time.Second)
	Validated(d, e.Clock.Now())
	if err := e.Store.UpdateDataset(ctx, d); err != nil {
		return err
	}
	p.Datasets[owner] = d
	for i, fail := range []bool{false, true} {
		e.Clock.Advance(time.Minute)
		w, err := p.Start(ctx, e, owner)
		if err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
		if err := progressAndCheckpoints(ctx, e, w, pipeline.KeepCheckpoints+1); err != nil {
			return err
		}
		if _, err := w.Progress(ctx, e); err != nil {
			return err
		}
		e.Clock.Advance(time.Minute)
		if _, err := e.Reconciler.Run(ctx); err != nil {
			return err
		}
		if err := Finish(ctx, e, w, fail); err != nil {
			return err
		}
	}
	w, err := p.Start(ctx, e, owner)
	if err != nil {
		return err
	}
	return progressAndCheckpoints(ctx, e, w, 1)
}
