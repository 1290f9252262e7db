package estimate_test

import (
	"fmt"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/estimate"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// The issue's reference dataset (1,000 examples, 1.2 M tokens, 0.6 M
// trained) with the balanced preset, on the default model: micro-batches
// of as many tokens as fit each GPU with 10 % to spare.
func ExampleCompare() {
	balanced, _ := pipeline.LookupPreset("balanced")
	cmp, err := estimate.Compare(catalog.Default(), estimate.Input{
		Dataset:         estimate.Dataset{Examples: 1000, TokensTotal: 1_200_000, TokensTrained: 600_000},
		Hyperparameters: balanced.Hyperparameters,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range cmp.Estimates {
		fmt.Printf("%-12s %s steps %d  micro-batches %d of %5d tokens  minutes %.0f / %.0f / %.0f  USD %.2f / %.2f / %.2f  %.1f GiB\n",
			r.GPU, r.Quantization, r.Steps.Total, r.Steps.MicroBatchesTotal, r.MicroBatchTokens,
			float64(r.DurationSeconds.Low)/60, float64(r.DurationSeconds.Expected)/60, float64(r.DurationSeconds.High)/60,
			r.CostUSD.Low, r.CostUSD.Expected, r.CostUSD.High, r.Memory.RequiredGiB)
	}
	for _, n := range cmp.DoesNotFit {
		fmt.Printf("%-12s does not fit: needs %.1f GiB, has %.1f\n", n.GPU, n.RequiredGiB, n.AvailableGiB)
	}
	fmt.Println("cheapest:", cmp.CheapestGPU, "fastest:", cmp.FastestGPU)
	// Output:
	// a100-80gb    nf4 steps 189  micro-batches 564 of  8192 tokens  minutes 28 / 41 / 80  USD 1.28 / 1.87 / 3.43  67.5 GiB
	// h100-80gb    nf4 steps 189  micro-batches 564 of  8192 tokens  minutes 10 / 14 / 33  USD 0.67 / 0.99 / 1.97  67.5 GiB
	// h200-141gb   nf4 steps 189  micro-batches 375 of 16384 tokens  minutes 8 / 12 / 30  USD 0.73 / 1.11 / 2.31  89.0 GiB
	// l40s-48gb    does not fit: needs 56.7 GiB, has 44.4
	// a6000-48gb   does not fit: needs 56.7 GiB, has 47.4
	// rtx4090-24gb does not fit: needs 56.7 GiB, has 23.6
	// cheapest: h100-80gb fastest: h200-141gb
}
