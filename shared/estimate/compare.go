package estimate

import (
	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Comparison is an estimate on every GPU of the catalog.
type Comparison struct {
	Model string `json:"model"`
	// Estimates has one Result per GPU the model fits, in price-table
	// order.
	Estimates []Result `json:"estimates"`
	// CheapestGPU has the lowest expected cost (ties: shorter expected
	// duration, then table order); FastestGPU the shortest expected
	// duration (ties: lower expected cost, then table order). Both are
	// chosen among the GPUs on which the job fits with headroom
	// (catalog.HeadroomFraction of the memory free), when there is one.
	// CheapestGPU is a job's GPU when the request names none.
	CheapestGPU string `json:"cheapest_gpu"`
	FastestGPU  string `json:"fastest_gpu"`
	// DoesNotFit lists the GPUs left out, with the memory the model needs.
	DoesNotFit       []catalog.NotFit `json:"does_not_fit"`
	PricesDate       string           `json:"prices_date"`
	EstimatorVersion string           `json:"estimator_version"`
}

// Compare estimates in on every GPU (in.GPU is ignored). Errors are as
// Estimate's; when the model fits no GPU the error is EInvalid with the
// []catalog.NotFit as details.
func Compare(c *catalog.Catalog, in Input) (Comparison, error) {
	m, err := checkInput(c, in)
	if err != nil {
		return Comparison{}, err
	}
	date := c.PricesDate()
	out := Comparison{
		Model:            m.ID,
		Estimates:        []Result{},
		DoesNotFit:       []catalog.NotFit{},
		PricesDate:       date,
		EstimatorVersion: Version,
	}
	for _, g := range c.GPUs() {
		tp, err := c.Throughput(m.ID, g.ID)
		if err != nil {
			return Comparison{}, err
		}
		mem := planMemory(m, g, in.Hyperparameters)
		if !mem.Fits {
			out.DoesNotFit = append(out.DoesNotFit, catalog.NotFit{
				Model: m.ID, GPU: g.ID, GPUName: g.Name,
				RequiredGiB: mem.RequiredGiB, AvailableGiB: mem.AvailableGiB, Memory: mem,
			})
			continue
		}
		out.Estimates = append(out.Estimates, estimate(date, m, g, tp, mem, in))
	}
	if len(out.Estimates) == 0 {
		e := pipeline.Errorf(pipeline.EInvalid,
			"%s fits on no GPU at %d tokens per micro-batch (max_seq_length) and LoRA rank %d: lower max_seq_length or lora_rank",
			m.ID, in.Hyperparameters.MaxSeqLength, in.Hyperparameters.LoRARank)
		e.Details = out.DoesNotFit
		return Comparison{}, e
	}
	// Candidates: the GPUs with headroom, or every GPU it fits on when
	// none has.
	var cand []int
	for i, r := range out.Estimates {
		if r.Memory.FitsWithHeadroom {
			cand = append(cand, i)
		}
	}
	if len(cand) == 0 {
		for i := range out.Estimates {
			cand = append(cand, i)
		}
	}
	cheap, fast := cand[0], cand[0]
	for _, i := range cand {
		r := out.Estimates[i]
		c, f := out.Estimates[cheap], out.Estimates[fast]
		if r.CostUSD.Expected < c.CostUSD.Expected ||
			(r.CostUSD.Expected == c.CostUSD.Expected && r.DurationSeconds.Expected < c.DurationSeconds.Expected) {
			cheap = i
		}
		if r.DurationSeconds.Expected < f.DurationSeconds.Expected ||
			(r.DurationSeconds.Expected == f.DurationSeconds.Expected && r.CostUSD.Expected < f.CostUSD.Expected) {
			fast = i
		}
	}
	out.CheapestGPU = out.Estimates[cheap].GPU
	out.FastestGPU = out.Estimates[fast].GPU
	return out, nil
}
