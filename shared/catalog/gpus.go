package catalog

import "math"

// GPU is one RunPod Serverless GPU class the pipeline can train on.
type GPU struct {
	// ID is stable and lowercase, e.g. "h100-80gb": the API's gpu_type.
	ID   string `json:"id"`
	Name string `json:"name"`
	// Pool is RunPod's Serverless GPU pool id, e.g. "ADA_80_PRO".
	Pool string `json:"pool"`
	// RunPodGPUTypeIDs are the full GPU names RunPod's REST API takes in
	// an endpoint's gpuTypeIds for this class; the first is the card the
	// throughput figures refer to.
	RunPodGPUTypeIDs []string `json:"runpod_gpu_type_ids"`
	// MemoryGiB is the marketed memory; UsableMemoryGiB is what CUDA
	// reports to PyTorch as the device's total capacity (from PyTorch's
	// out-of-memory messages, "GPU 0 has a total capacity of … GiB"), the
	// figure a model must fit in.
	MemoryGiB       float64 `json:"memory_gib"`
	UsableMemoryGiB float64 `json:"usable_memory_gib"`
	// PriceUSDPerSecond is RunPod's flex-worker price, billed per second
	// from worker start; PriceUSDPerHour is derived from it (rounded to
	// cents) for display.
	PriceUSDPerSecond float64 `json:"price_usd_per_second"`
	PriceUSDPerHour   float64 `json:"price_usd_per_hour"`
}

func (g GPU) clone() GPU {
	g.RunPodGPUTypeIDs = append([]string(nil), g.RunPodGPUTypeIDs...)
	return g
}

func (g *GPU) derive() {
	g.PriceUSDPerHour = math.Round(g.PriceUSDPerSecond*3600*100) / 100
}

// PriceTable is the GPU list with its prices and the date they were taken.
type PriceTable struct {
	// Date is when the prices were read from RunPod, YYYY-MM-DD; every
	// estimate carries it.
	Date   string `json:"date"`
	Source string `json:"source"`
	GPUs   []GPU  `json:"gpus"`
}

func (p PriceTable) clone() PriceTable {
	gs := make([]GPU, len(p.GPUs))
	for i, g := range p.GPUs {
		gs[i] = g.clone()
	}
	p.GPUs = gs
	return p
}

// DefaultPricesDate is the date of the built-in prices.
const DefaultPricesDate = "2026-11-25"

// defaultPrices is RunPod's Serverless flex-worker price list (USD per
// second) as the project recorded it on DefaultPricesDate. Pools and GPU
// type names are RunPod's (the REST API's gpuTypeIds enumeration).
func defaultPrices() PriceTable {
	gpus := []GPU{
		{
			ID: "a100-80gb", Name: "A100 80GB", Pool: "AMPERE_80",
			RunPodGPUTypeIDs: []string{"NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"},
			MemoryGiB:        80, UsableMemoryGiB: 79.15,
			PriceUSDPerSecond: 0.00076,
		},
		{
			ID: "h100-80gb", Name: "H100 80GB", Pool: "ADA_80_PRO",
			RunPodGPUTypeIDs: []string{"NVIDIA H100 80GB HBM3"},
			MemoryGiB:        80, UsableMemoryGiB: 79.11,
			PriceUSDPerSecond: 0.00116,
		},
		{
			ID: "h200-141gb", Name: "H200 141GB", Pool: "HOPPER_141",
			RunPodGPUTypeIDs: []string{"NVIDIA H200"},
			MemoryGiB:        141, UsableMemoryGiB: 139.80,
			PriceUSDPerSecond: 0.00155,
		},
		{
			// The pool also serves L40 and RTX 6000 Ada (48 GB Ada cards of
			// similar speed); the smallest usable memory of the three is used.
			ID: "l40s-48gb", Name: "L40S 48GB", Pool: "ADA_48_PRO",
			RunPodGPUTypeIDs: []string{"NVIDIA L40S", "NVIDIA L40", "NVIDIA RTX 6000 Ada Generation"},
			MemoryGiB:        48, UsableMemoryGiB: 44.39,
			PriceUSDPerSecond: 0.00053,
		},
		{
			ID: "a6000-48gb", Name: "RTX A6000 48GB", Pool: "AMPERE_48",
			RunPodGPUTypeIDs: []string{"NVIDIA RTX A6000", "NVIDIA A40"},
			MemoryGiB:        48, UsableMemoryGiB: 47.40,
			PriceUSDPerSecond: 0.00034,
		},
		{
			ID: "rtx4090-24gb", Name: "RTX 4090 24GB", Pool: "ADA_24",
			RunPodGPUTypeIDs: []string{"NVIDIA GeForce RTX 4090"},
			MemoryGiB:        24, UsableMemoryGiB: 23.55,
			PriceUSDPerSecond: 0.00031,
		},
	}
	for i := range gpus {
		gpus[i].derive()
	}
	return PriceTable{
		Date:   DefaultPricesDate,
		Source: "RunPod Serverless pricing, flex workers (USD per second)",
		GPUs:   gpus,
	}
}
