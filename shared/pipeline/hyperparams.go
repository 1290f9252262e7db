package pipeline

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Hyperparameters configure one LoRA training run. JSON names are the API's.
type Hyperparameters struct {
	LearningRate         float64 `json:"learning_rate"`
	BatchSize            int     `json:"batch_size"`
	GradientAccumulation int     `json:"gradient_accumulation"`
	Epochs               int     `json:"epochs"`
	LoRARank             int     `json:"lora_rank"`
	LoRAAlpha            int     `json:"lora_alpha"`
	LoRADropout          float64 `json:"lora_dropout"`
	MaxSeqLength         int     `json:"max_seq_length"`
	WarmupRatio          float64 `json:"warmup_ratio"`
}

// HyperparameterOverrides is a partial set of hyperparameters: a nil field
// keeps the preset's value.
type HyperparameterOverrides struct {
	LearningRate         *float64 `json:"learning_rate,omitempty"`
	BatchSize            *int     `json:"batch_size,omitempty"`
	GradientAccumulation *int     `json:"gradient_accumulation,omitempty"`
	Epochs               *int     `json:"epochs,omitempty"`
	LoRARank             *int     `json:"lora_rank,omitempty"`
	LoRAAlpha            *int     `json:"lora_alpha,omitempty"`
	LoRADropout          *float64 `json:"lora_dropout,omitempty"`
	MaxSeqLength         *int     `json:"max_seq_length,omitempty"`
	WarmupRatio          *float64 `json:"warmup_ratio,omitempty"`
}

// Bound is the inclusive range a hyperparameter must lie in.
type Bound struct {
	Field string  `json:"field"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
}

// Bounds lists the accepted range of every hyperparameter, in API order.
var Bounds = []Bound{
	{"learning_rate", 1e-5, 1e-3},
	{"batch_size", 1, 64},
	{"gradient_accumulation", 1, 64},
	{"epochs", 1, 20},
	{"lora_rank", 4, 128},
	{"lora_alpha", 1, 512},
	{"lora_dropout", 0, 0.5},
	{"max_seq_length", 256, 32768},
	{"warmup_ratio", 0, 0.5},
}

func (h Hyperparameters) values() map[string]float64 {
	return map[string]float64{
		"learning_rate":         h.LearningRate,
		"batch_size":            float64(h.BatchSize),
		"gradient_accumulation": float64(h.GradientAccumulation),
		"epochs":                float64(h.Epochs),
		"lora_rank":             float64(h.LoRARank),
		"lora_alpha":            float64(h.LoRAAlpha),
		"lora_dropout":          h.LoRADropout,
		"max_seq_length":        float64(h.MaxSeqLength),
		"warmup_ratio":          h.WarmupRatio,
	}
}

// FieldError is one hyperparameter outside its bounds.
type FieldError struct {
	Field string  `json:"field"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Value float64 `json:"value"`
}

func (e FieldError) Error() string {
	return fmt.Sprintf("%s must be between %s and %s, got %s",
		e.Field, formatNumber(e.Min), formatNumber(e.Max), formatNumber(e.Value))
}

// Validate checks every field against Bounds. The error, when not nil, is an
// *Error with code EInvalid whose details list every field out of bounds.
func (h Hyperparameters) Validate() error {
	vals := h.values()
	var bad []FieldError
	for _, b := range Bounds {
		v := vals[b.Field]
		// NaN fails both comparisons, so test for "inside" and negate.
		if !(v >= b.Min && v <= b.Max) {
			bad = append(bad, FieldError{Field: b.Field, Min: b.Min, Max: b.Max, Value: v})
		}
	}
	if len(bad) == 0 {
		return nil
	}
	msgs := make([]string, len(bad))
	for i, fe := range bad {
		msgs[i] = fe.Error()
	}
	return &Error{Code: EInvalid, Message: "hyperparameters out of range: " + strings.Join(msgs, "; "), Details: bad}
}

// Apply returns h with every non-nil override set.
func (h Hyperparameters) Apply(o HyperparameterOverrides) Hyperparameters {
	setF := func(dst *float64, src *float64) {
		if src != nil {
			*dst = *src
		}
	}
	setI := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	setF(&h.LearningRate, o.LearningRate)
	setI(&h.BatchSize, o.BatchSize)
	setI(&h.GradientAccumulation, o.GradientAccumulation)
	setI(&h.Epochs, o.Epochs)
	setI(&h.LoRARank, o.LoRARank)
	setI(&h.LoRAAlpha, o.LoRAAlpha)
	setF(&h.LoRADropout, o.LoRADropout)
	setI(&h.MaxSeqLength, o.MaxSeqLength)
	setF(&h.WarmupRatio, o.WarmupRatio)
	return h
}

// Preset is a named, tested starting point for the hyperparameters.
type Preset struct {
	Name            string          `json:"name"`
	Description     string          `json:"description"`
	Hyperparameters Hyperparameters `json:"hyperparameters"`
}

// DefaultPreset is used when a request names none.
const DefaultPreset = "balanced"

var presets = map[string]Preset{
	"fast": {
		Name:        "fast",
		Description: "One pass at a higher learning rate and low rank: a quick check that the data teaches what you expect.",
		Hyperparameters: Hyperparameters{
			LearningRate: 2e-4, BatchSize: 4, GradientAccumulation: 2, Epochs: 1,
			LoRARank: 8, LoRAAlpha: 16, LoRADropout: 0.05, MaxSeqLength: 2048, WarmupRatio: 0.03,
		},
	},
	"balanced": {
		Name:        "balanced",
		Description: "The default: three epochs at rank 16, the usual QLoRA recipe.",
		Hyperparameters: Hyperparameters{
			LearningRate: 1e-4, BatchSize: 2, GradientAccumulation: 8, Epochs: 3,
			LoRARank: 16, LoRAAlpha: 32, LoRADropout: 0.05, MaxSeqLength: 4096, WarmupRatio: 0.05,
		},
	},
	"quality": {
		Name:        "quality",
		Description: "More epochs, rank 64 and a lower learning rate, for the best adapter at several times the cost.",
		Hyperparameters: Hyperparameters{
			LearningRate: 5e-5, BatchSize: 2, GradientAccumulation: 16, Epochs: 5,
			LoRARank: 64, LoRAAlpha: 128, LoRADropout: 0.1, MaxSeqLength: 8192, WarmupRatio: 0.1,
		},
	},
}

// Presets returns every preset, sorted by name.
func Presets() []Preset {
	out := make([]Preset, 0, len(presets))
	for _, p := range presets {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LookupPreset returns the named preset ("" means DefaultPreset).
func LookupPreset(name string) (Preset, error) {
	if name == "" {
		name = DefaultPreset
	}
	p, ok := presets[name]
	if !ok {
		return Preset{}, Errorf(EInvalid, "unknown preset %q: choose fast, balanced or quality", name)
	}
	return p, nil
}

// ResolveHyperparameters applies overrides to a preset and validates the result.
func ResolveHyperparameters(preset string, o HyperparameterOverrides) (Hyperparameters, error) {
	p, err := LookupPreset(preset)
	if err != nil {
		return Hyperparameters{}, err
	}
	h := p.Hyperparameters.Apply(o)
	if err := h.Validate(); err != nil {
		return Hyperparameters{}, err
	}
	return h, nil
}

// formatNumber writes v in plain decimal (0.00001, not 1e-05).
func formatNumber(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}
