package estimate_test

import (
	"fmt"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/estimate"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// The issue's reference dataset (1,000 examples, 1.2 M tokens, 0.6 M
// trained) with the balanced preset, on the default model.
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
		fmt.Printf("%-12s %s steps %d  hours %.1f / %.1f / %.1f  USD %.2f / %.2f / %.2f  %.1f GiB\n",
			r.GPU, r.Quantization, r.Steps.Total,
			float64(r.DurationSeconds.Low)/3600, float64(r.DurationSeconds.Expected)/3600, float64(r.DurationSeconds.High)/3600,
			r.CostUSD.Low, r.CostUSD.Expected, r.CostUSD.High, r.Memory.RequiredGiB)
	}
	for _, n := range cmp.DoesNotFit {
		fmt.Printf("%-12s does not fit: needs %.1f GiB, has %.1f\n", n.GPU, n.RequiredGiB, n.AvailableGiB)
	}
	fmt.Println("cheapest:", cmp.CheapestGPU, "fastest:", cmp.FastestGPU)
	// Output:
	// a100-80gb    nf4 steps 189  hours 7.2 / 10.8 / 21.7  USD 19.57 / 29.42 / 59.12  61.4 GiB
	// h100-80gb    nf4 steps 189  hours 5.8 / 8.8 / 17.7  USD 24.33 / 36.56 / 73.46  61.4 GiB
	// h200-141gb   nf4 steps 189  hours 5.8 / 8.7 / 17.7  USD 32.48 / 48.81 / 98.05  61.4 GiB
	// l40s-48gb    does not fit: needs 61.4 GiB, has 44.4
	// a6000-48gb   does not fit: needs 61.4 GiB, has 47.4
	// rtx4090-24gb does not fit: needs 61.4 GiB, has 23.6
	// cheapest: a100-80gb fastest: h200-141gb
}
