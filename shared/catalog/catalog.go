// Package catalog is the one place that knows the base models (their
// tokenizer, chat rule, LoRA targets, quantization per GPU, weights on the
// network volume), the RunPod GPU classes with their prices, and how fast
// each model trains on each GPU. The estimator, the dispatcher and the
// HTTP API read it; a JSON file can override the prices and throughputs
// (ParseOverrides, FromEnv).
package catalog

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// Catalog is an immutable set of models, GPUs with prices, and throughputs.
// Its methods return copies; the zero value is not usable (use Default or
// New).
type Catalog struct {
	models     []Model
	prices     PriceTable
	throughput []Throughput
	modelIdx   map[string]int
	gpuIdx     map[string]int
	tpIdx      map[pairKey]int
}

// Default returns the built-in catalog.
func Default() *Catalog {
	c, err := New(defaultModels(), defaultPrices(), defaultThroughput())
	if err != nil {
		panic("catalog: built-in table is invalid: " + err.Error())
	}
	return c
}

// New validates and indexes a catalog. Every model must have a throughput
// figure on every GPU. Errors are plain errors listing every problem (this
// is configuration, not caller input).
func New(models []Model, prices PriceTable, throughput []Throughput) (*Catalog, error) {
	c := &Catalog{
		modelIdx: map[string]int{},
		gpuIdx:   map[string]int{},
		tpIdx:    map[pairKey]int{},
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	for _, m := range models {
		m = m.clone()
		for _, p := range validateModel(m) {
			bad("model %q: %s", m.ID, p)
		}
		if _, dup := c.modelIdx[m.ID]; dup {
			bad("model %q: listed twice", m.ID)
			continue
		}
		c.modelIdx[m.ID] = len(c.models)
		c.models = append(c.models, m)
	}
	if len(c.models) == 0 {
		bad("no models")
	}

	c.prices = prices.clone()
	if err := validateDate(c.prices.Date); err != nil {
		bad("prices: date: %v", err)
	}
	for i := range c.prices.GPUs {
		g := &c.prices.GPUs[i]
		g.derive()
		for _, p := range validateGPU(*g) {
			bad("gpu %q: %s", g.ID, p)
		}
		if _, dup := c.gpuIdx[g.ID]; dup {
			bad("gpu %q: listed twice", g.ID)
			continue
		}
		c.gpuIdx[g.ID] = i
	}
	if len(c.prices.GPUs) == 0 {
		bad("no GPUs")
	}

	for _, t := range throughput {
		for _, p := range validateThroughput(t) {
			bad("throughput %s on %s: %s", t.Model, t.GPU, p)
		}
		if _, ok := c.modelIdx[t.Model]; !ok {
			bad("throughput %s on %s: no such model", t.Model, t.GPU)
		}
		if _, ok := c.gpuIdx[t.GPU]; !ok {
			bad("throughput %s on %s: no such GPU", t.Model, t.GPU)
		}
		k := pairKey{t.Model, t.GPU}
		if _, dup := c.tpIdx[k]; dup {
			bad("throughput %s on %s: listed twice", t.Model, t.GPU)
			continue
		}
		c.tpIdx[k] = len(c.throughput)
		c.throughput = append(c.throughput, t)
	}
	for _, m := range c.models {
		for _, g := range c.prices.GPUs {
			if _, ok := c.tpIdx[pairKey{m.ID, g.ID}]; !ok {
				bad("no throughput figure for %s on %s", m.ID, g.ID)
			}
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return c, nil
}

var gpuIDPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

func validateModel(m Model) []string {
	var p []string
	if m.ID == "" {
		p = append(p, "id is empty")
	}
	if m.Parameters <= 0 || m.ActiveParameters <= 0 || m.ActiveParameters > m.Parameters {
		p = append(p, "parameters must be > 0 and ≥ active_parameters > 0")
	}
	if m.UnquantizedParameters < 0 || m.UnquantizedParameters > m.Parameters {
		p = append(p, "unquantized_parameters must be between 0 and parameters")
	}
	if m.Layers <= 0 || m.HiddenSize <= 0 || m.VocabSize <= 0 || m.ContextLength <= 0 {
		p = append(p, "layers, hidden_size, vocab_size and context_length must be > 0")
	}
	if m.Experts < 0 || m.ExpertsPerToken < 0 || m.ExpertsPerToken > m.Experts {
		p = append(p, "experts_per_token must be between 0 and experts")
	}
	if m.Tokenizer == "" || m.ChatRule == "" {
		p = append(p, "tokenizer and chat_rule are required")
	}
	if len(m.LoRATargetModules) == 0 || m.LoRAParametersPerRank <= 0 {
		p = append(p, "lora_target_modules and lora_parameters_per_rank are required")
	}
	if m.LayerActivationBytesPerToken <= 0 {
		p = append(p, "layer_activation_bytes_per_token must be > 0")
	}
	if m.ExpertStackBytes < 0 || (m.Experts == 0 && m.ExpertStackBytes != 0) {
		p = append(p, "expert_stack_bytes must be ≥ 0, and 0 for a dense model")
	}
	if len(m.Quantization) == 0 {
		p = append(p, "quantization rules are required")
	} else {
		for i, r := range m.Quantization {
			if !r.Quantization.Valid() {
				p = append(p, fmt.Sprintf("quantization[%d]: unknown quantization %q", i, r.Quantization))
			}
			if i > 0 && r.MinGPUMemoryGiB >= m.Quantization[i-1].MinGPUMemoryGiB {
				p = append(p, "quantization rules must be sorted by min_gpu_memory_gib, largest first")
			}
		}
		if last := m.Quantization[len(m.Quantization)-1]; last.MinGPUMemoryGiB != 0 {
			p = append(p, "the last quantization rule must have min_gpu_memory_gib 0")
		}
	}
	hasBF16 := false
	for i, w := range m.Weights {
		if !w.Quantization.Valid() || w.Path == "" || w.Bytes <= 0 {
			p = append(p, fmt.Sprintf("weights[%d]: quantization, path and bytes are required", i))
		}
		hasBF16 = hasBF16 || w.Quantization == BF16
	}
	if !hasBF16 {
		p = append(p, "a BF16 weights copy is required")
	}
	return p
}

func validateGPU(g GPU) []string {
	var p []string
	if !gpuIDPattern.MatchString(g.ID) {
		p = append(p, "id must be lowercase letters and digits joined by '-', e.g. \"h100-80gb\"")
	}
	if g.Name == "" {
		p = append(p, "name is required")
	}
	if g.Pool == "" {
		p = append(p, "pool is required")
	}
	if len(g.RunPodGPUTypeIDs) == 0 || slices.Contains(g.RunPodGPUTypeIDs, "") {
		p = append(p, "runpod_gpu_type_ids must list at least one non-empty GPU type")
	}
	if !(g.MemoryGiB > 0) || !(g.UsableMemoryGiB > 0) || g.UsableMemoryGiB > g.MemoryGiB {
		p = append(p, "memory_gib and usable_memory_gib must be > 0, usable_memory_gib ≤ memory_gib")
	}
	// NaN fails every comparison: test for the good range and negate.
	if !(g.PriceUSDPerSecond > 0 && g.PriceUSDPerSecond < 1) {
		p = append(p, "price_usd_per_second must be > 0 and < 1")
	}
	return p
}

func validateThroughput(t Throughput) []string {
	var p []string
	if !(t.TokensPerSecond > 0 && t.TokensPerSecond < 1e9) {
		p = append(p, "tokens_per_second must be > 0")
	}
	if !(t.MicroBatchSeconds >= 0 && t.MicroBatchSeconds < 3600) {
		p = append(p, "micro_batch_seconds must be ≥ 0 and < 3600")
	}
	if !(t.Uncertainty >= 0 && t.Uncertainty <= 0.9) {
		p = append(p, "uncertainty must be between 0 and 0.9")
	}
	if t.Source == "" {
		p = append(p, "source is required")
	}
	return p
}

func validateDate(s string) error {
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		return fmt.Errorf("want YYYY-MM-DD, got %q", s)
	}
	return nil
}

// Models returns every model, the default first, then by id.
func (c *Catalog) Models() []Model {
	out := make([]Model, len(c.models))
	for i, m := range c.models {
		out[i] = m.clone()
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].ID == DefaultModelID) != (out[j].ID == DefaultModelID) {
			return out[i].ID == DefaultModelID
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Model returns the model with the given id ("" means DefaultModelID), or
// a *pipeline.Error with code EInvalid naming the known ones.
func (c *Catalog) Model(id string) (Model, error) {
	if id == "" {
		id = DefaultModelID
	}
	i, ok := c.modelIdx[id]
	if !ok {
		return Model{}, pipeline.Errorf(pipeline.EInvalid, "unknown base model %q: choose one of %s", id, strings.Join(c.modelIDs(), ", "))
	}
	return c.models[i].clone(), nil
}

// DefaultModel returns the model named by DefaultModelID.
func (c *Catalog) DefaultModel() (Model, error) { return c.Model(DefaultModelID) }

func (c *Catalog) modelIDs() []string {
	ids := make([]string, len(c.models))
	for i, m := range c.models {
		ids[i] = m.ID
	}
	sort.Strings(ids)
	return ids
}

// GPUs returns every GPU in price-table order.
func (c *Catalog) GPUs() []GPU { return c.prices.clone().GPUs }

// GPU returns the GPU with the given id, or a *pipeline.Error with code
// EInvalid naming the known ones.
func (c *Catalog) GPU(id string) (GPU, error) {
	i, ok := c.gpuIdx[id]
	if !ok {
		ids := make([]string, len(c.prices.GPUs))
		for i, g := range c.prices.GPUs {
			ids[i] = g.ID
		}
		return GPU{}, pipeline.Errorf(pipeline.EInvalid, "unknown GPU type %q: choose one of %s", id, strings.Join(ids, ", "))
	}
	return c.prices.GPUs[i].clone(), nil
}

// PricesDate returns the price table's date.
func (c *Catalog) PricesDate() string { return c.prices.Date }

// Prices returns the price table.
func (c *Catalog) Prices() PriceTable { return c.prices.clone() }

// Throughput returns the figure for a model on a GPU.
func (c *Catalog) Throughput(modelID, gpuID string) (Throughput, error) {
	i, ok := c.tpIdx[pairKey{modelID, gpuID}]
	if !ok {
		return Throughput{}, pipeline.Errorf(pipeline.EInvalid, "no throughput figure for %s on %s", modelID, gpuID)
	}
	return c.throughput[i], nil
}

// Throughputs returns every throughput figure.
func (c *Catalog) Throughputs() []Throughput { return slices.Clone(c.throughput) }

// WithPrices returns a copy of c with another price table. Every model
// must already have a throughput figure on every GPU of p.
func (c *Catalog) WithPrices(p PriceTable) (*Catalog, error) {
	return New(c.models, p, c.throughput)
}

// WithVolumeRoot returns a copy of c whose weights paths under
// DefaultVolumeRoot are moved under root (e.g. "/workspace/models" for a
// Pod). root must be an absolute path.
func (c *Catalog) WithVolumeRoot(root string) (*Catalog, error) {
	if !strings.HasPrefix(root, "/") || strings.TrimRight(root, "/") == "" {
		return nil, fmt.Errorf("catalog: volume root must be an absolute path below /, got %q", root)
	}
	ms := make([]Model, len(c.models))
	for i, m := range c.models {
		m = m.clone()
		for j := range m.Weights {
			m.Weights[j].Path = rerootPath(m.Weights[j].Path, root)
		}
		ms[i] = m
	}
	return New(ms, c.prices, c.throughput)
}

// WithModelPath returns a copy of c where model id's weights copy in q is
// at path (absolute). When the model has no copy in q, one is added with
// the BF16 copy's size scaled by q's bits per weight.
func (c *Catalog) WithModelPath(id string, q Quantization, path string) (*Catalog, error) {
	if !q.Valid() {
		return nil, fmt.Errorf("catalog: unknown quantization %q", q)
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("catalog: model path must be absolute, got %q", path)
	}
	i, ok := c.modelIdx[id]
	if !ok {
		return nil, fmt.Errorf("catalog: unknown model %q", id)
	}
	ms := make([]Model, len(c.models))
	for j, m := range c.models {
		ms[j] = m.clone()
	}
	m := &ms[i]
	found := false
	for j := range m.Weights {
		if m.Weights[j].Quantization == q {
			m.Weights[j].Path = path
			found = true
		}
	}
	if !found {
		bf := m.WeightsFor(BF16)
		m.Weights = append(m.Weights, WeightsCopy{
			Quantization: q, Path: path,
			Bytes: int64(float64(bf.Bytes) * q.BitsPerWeight() / 16),
		})
	}
	return New(ms, c.prices, c.throughput)
}
