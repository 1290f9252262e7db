package runpodemu

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/brightrun/brightrun/shared/contract"
)

// LayerKind says which decoder layers hold a module.
type LayerKind int

// Layer kinds of hybrid models (Qwen3-Next: three linear-attention layers,
// then one full-attention layer).
const (
	AllLayers LayerKind = iota
	FullAttentionLayers
	LinearAttentionLayers
)

// Module is one linear layer of a decoder layer that LoRA may wrap.
type Module struct {
	Name    string // path inside the layer, e.g. "self_attn.q_proj"
	In, Out int64  // in_features, out_features
	On      LayerKind
}

// ModelShape is what the adapter's tensors depend on: the decoder layers and
// their adaptable linear modules (routed experts, routers and gates are left
// out: the contract never lets LoRA wrap them).
type ModelShape struct {
	Layers int
	// FullAttentionInterval: layer i (from 0) is a full-attention layer
	// when (i+1) % FullAttentionInterval == 0; 1 for a model whose every
	// layer is full attention.
	FullAttentionInterval int
	Modules               []Module
}

func (s ModelShape) full(layer int) bool {
	return s.FullAttentionInterval <= 1 || (layer+1)%s.FullAttentionInterval == 0
}

// Shapes of the catalog's base models, from their config.json (hidden
// size, heads, head dims; Qwen3-Next's q_proj is doubled for its output
// gate, in_proj_qkvz is 2·key_dim + 2·value_dim, in_proj_ba is
// 2·value_heads). Qwen3-Next was cross-checked against a published
// qwen3_next config (Qwen3-Coder-Next, same shapes: hidden 2048, 48 layers,
// 16 query / 2 KV heads of 256, linear 16 key / 32 value heads of 128,
// shared expert 512, full attention every 4th layer) and shared/catalog's
// LoRA parameter count (1,440,000 per rank); the others are approximate.
var defaultShapes = map[string]ModelShape{
	"Qwen/Qwen3-Next-80B-A3B-Instruct": qwen3Next(2048, 48, 16, 2, 256, 16, 32, 128, 512),
	"Qwen/Qwen3-30B-A3B-Instruct-2507": {Layers: 48, FullAttentionInterval: 1, Modules: []Module{
		{"self_attn.q_proj", 2048, 4096, AllLayers}, {"self_attn.k_proj", 2048, 512, AllLayers},
		{"self_attn.v_proj", 2048, 512, AllLayers}, {"self_attn.o_proj", 4096, 2048, AllLayers},
	}},
	"Qwen/Qwen3-8B": {Layers: 36, FullAttentionInterval: 1, Modules: []Module{
		{"self_attn.q_proj", 4096, 4096, AllLayers}, {"self_attn.k_proj", 4096, 1024, AllLayers},
		{"self_attn.v_proj", 4096, 1024, AllLayers}, {"self_attn.o_proj", 4096, 4096, AllLayers},
		{"mlp.gate_proj", 4096, 12288, AllLayers}, {"mlp.up_proj", 4096, 12288, AllLayers},
		{"mlp.down_proj", 12288, 4096, AllLayers},
	}},
}

// qwen3Next builds a Qwen3-Next shape from its config figures.
func qwen3Next(hidden int64, layers int, heads, kvHeads, headDim, linKeyHeads, linValueHeads, linHeadDim, sharedExpert int64) ModelShape {
	keyDim, valueDim := linKeyHeads*linHeadDim, linValueHeads*linHeadDim
	return ModelShape{Layers: layers, FullAttentionInterval: 4, Modules: []Module{
		{"self_attn.q_proj", hidden, heads * headDim * 2, FullAttentionLayers},
		{"self_attn.k_proj", hidden, kvHeads * headDim, FullAttentionLayers},
		{"self_attn.v_proj", hidden, kvHeads * headDim, FullAttentionLayers},
		{"self_attn.o_proj", heads * headDim, hidden, FullAttentionLayers},
		{"linear_attn.in_proj_qkvz", hidden, 2*keyDim + 2*valueDim, LinearAttentionLayers},
		{"linear_attn.in_proj_ba", hidden, 2 * linValueHeads, LinearAttentionLayers},
		{"linear_attn.out_proj", valueDim, hidden, LinearAttentionLayers},
		{"mlp.shared_expert.gate_proj", hidden, sharedExpert, AllLayers},
		{"mlp.shared_expert.up_proj", hidden, sharedExpert, AllLayers},
		{"mlp.shared_expert.down_proj", sharedExpert, hidden, AllLayers},
	}}
}

// tinyQwen3Next is gpu-image's tiny test checkpoint (brightrun_worker.tiny):
// 4 layers, hidden 64, 4 heads / 2 KV heads of 16, linear 2 key / 4 value
// heads of 16, shared expert 32.
var tinyQwen3Next = qwen3Next(64, 4, 4, 2, 16, 2, 4, 16, 32)

// genericShape is used for a base model the table does not know: a dense
// decoder with the usual module names.
var genericShape = ModelShape{Layers: 32, FullAttentionInterval: 1, Modules: []Module{
	{"self_attn.q_proj", 4096, 4096, AllLayers}, {"self_attn.k_proj", 4096, 1024, AllLayers},
	{"self_attn.v_proj", 4096, 1024, AllLayers}, {"self_attn.o_proj", 4096, 4096, AllLayers},
	{"mlp.gate_proj", 4096, 11008, AllLayers}, {"mlp.up_proj", 4096, 11008, AllLayers},
	{"mlp.down_proj", 11008, 4096, AllLayers},
}}

// Tiny returns a small shape with the same module names and layer
// pattern: Qwen3-Next shapes become gpu-image's tiny checkpoint; others
// keep at most 4 layers with every dimension divided by 64.
func (s ModelShape) Tiny() ModelShape {
	if s.FullAttentionInterval == 4 && len(s.Modules) == len(tinyQwen3Next.Modules) {
		return tinyQwen3Next
	}
	t := ModelShape{Layers: min(s.Layers, 4), FullAttentionInterval: s.FullAttentionInterval}
	for _, m := range s.Modules {
		m.In, m.Out = max(m.In/64, 8), max(m.Out/64, 8)
		t.Modules = append(t.Modules, m)
	}
	return t
}

// AdapterModules returns how many modules LoRA wraps in a base model of
// the built-in table (full size) for targets, and Σ (in + out) over them:
// the adapter has rank × that many parameters. Zeros for an unknown model.
func AdapterModules(modelID string, targets []string) (modules int, perRank int64) {
	s, ok := defaultShapes[modelID]
	if !ok {
		return 0, 0
	}
	mods, _ := s.matchTargets(targets)
	for _, m := range mods {
		perRank += m.in + m.out
	}
	return len(mods), perRank
}

// wrapped is one module LoRA wraps.
type wrapped struct {
	path    string // "model.layers.3.self_attn.q_proj"
	in, out int64
}

// matchTargets returns the modules peft would wrap for targets (a module
// matches when its dotted name equals a target or ends with "." + target)
// and the targets that match nothing.
func (s ModelShape) matchTargets(targets []string) (mods []wrapped, unmatched []string) {
	hit := make(map[string]bool, len(targets))
	for layer := 0; layer < s.Layers; layer++ {
		for _, m := range s.Modules {
			if m.On == FullAttentionLayers && !s.full(layer) || m.On == LinearAttentionLayers && s.full(layer) {
				continue
			}
			path := fmt.Sprintf("model.layers.%d.%s", layer, m.Name)
			for _, t := range targets {
				if path == t || strings.HasSuffix(path, "."+t) {
					mods = append(mods, wrapped{path, m.In, m.Out})
					hit[t] = true
					break
				}
			}
		}
	}
	for _, t := range targets {
		if !hit[t] {
			unmatched = append(unmatched, t)
		}
	}
	return mods, unmatched
}

// adapterFiles are the two files of a trained adapter, as peft saves them.
type adapterFiles struct {
	config      []byte
	model       []byte
	modules     int
	trainable   int64
	tensorBytes int64
}

// buildAdapter writes adapter_config.json (peft's LoraConfig) and
// adapter_model.safetensors (lora_A [r, in] and lora_B [out, r] per wrapped
// module, under peft's names) with deterministic pseudo-trained values.
// LoRA weights are F32 under QLoRA (peft keeps them in float32 beside
// 4-bit layers) and BF16 beside BF16 weights.
func buildAdapter(spec *contract.JobSpec, mods []wrapped) (adapterFiles, error) {
	h := spec.Hyperparameters
	targets := append([]string(nil), spec.BaseModel.LoRATargets...)
	sort.Strings(targets)
	cfg := map[string]any{
		"alpha_pattern":           map[string]any{},
		"auto_mapping":            nil,
		"base_model_name_or_path": spec.BaseModel.ID,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"layers_pattern":          nil,
		"layers_to_transform":     nil,
		"lora_alpha":              h.LoRAAlpha,
		"lora_dropout":            h.LoRADropout,
		"modules_to_save":         nil,
		"peft_type":               "LORA",
		"r":                       h.LoRARank,
		"rank_pattern":            map[string]any{},
		"revision":                nil,
		"target_modules":          targets,
		"task_type":               "CAUSAL_LM",
		"use_dora":                false,
		"use_rslora":              false,
	}
	config, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return adapterFiles{}, fmt.Errorf("encode adapter config: %w", err)
	}
	dtype := "F32"
	if spec.BaseModel.Quantization == contract.QuantizationBF16 {
		dtype = "BF16"
	}
	seed := fnv.New64a()
	fmt.Fprintf(seed, "%s/%d", spec.JobID, spec.Attempt)
	rng := rand.New(rand.NewPCG(seed.Sum64(), 0x9e3779b97f4a7c15))
	r := int64(h.LoRARank)
	var tensors []Tensor
	var trainable int64
	for _, m := range mods {
		a := fill(rng, dtype, r*m.in, 1/math.Sqrt(float64(m.in)))
		b := fill(rng, dtype, m.out*r, 0.002)
		prefix := "base_model.model." + m.path
		tensors = append(tensors,
			Tensor{Name: prefix + ".lora_A.weight", DType: dtype, Shape: []int64{r, m.in}, Data: a},
			Tensor{Name: prefix + ".lora_B.weight", DType: dtype, Shape: []int64{m.out, r}, Data: b})
		trainable += r * (m.in + m.out)
	}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, tensors, map[string]string{"format": "pt"}); err != nil {
		return adapterFiles{}, err
	}
	return adapterFiles{config: append(config, '\n'), model: buf.Bytes(), modules: len(mods), trainable: trainable}, nil
}

// fill returns n values uniform in [-scale, scale] as little-endian dtype.
func fill(rng *rand.Rand, dtype string, n int64, scale float64) []byte {
	size := DTypeSize(dtype)
	out := make([]byte, n*size)
	for i := int64(0); i < n; i++ {
		v := float32((rng.Float64()*2 - 1) * scale)
		bits := math.Float32bits(v)
		if dtype == "BF16" {
			// round to nearest even on the dropped 16 bits
			bits += 0x7fff + (bits>>16)&1
			binary.LittleEndian.PutUint16(out[i*2:], uint16(bits>>16))
		} else {
			binary.LittleEndian.PutUint32(out[i*4:], bits)
		}
	}
	return out
}
