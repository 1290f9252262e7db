package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWithOverridesJSON(t *testing.T) {
	base := Default()
	tests := []struct {
		name  string
		file  string
		check func(t *testing.T, c *Catalog)
	}{
		{
			name: "a price update keeps every other field",
			file: `{"date": "2026-12-01", "gpus": [
  {"id": "h100-80gb", "price_usd_per_second": 0.001},
  {"id": "a100-80gb"}
]}`,
			check: func(t *testing.T, c *Catalog) {
				g, err := c.GPU("h100-80gb")
				if err != nil || g.PriceUSDPerSecond != 0.001 || g.PriceUSDPerHour != 3.6 || g.Pool != "ADA_80_PRO" || g.UsableMemoryGiB != 79.11 {
					t.Errorf("GPU(h100-80gb) = %+v, %v, want the new price and the built-in rest", g, err)
				}
				if len(c.GPUs()) != 2 {
					t.Errorf("GPUs() has %d entries, want the file's 2", len(c.GPUs()))
				}
				if c.Prices().Date != "2026-12-01" {
					t.Errorf("Prices().Date = %q, want the file's", c.Prices().Date)
				}
			},
		},
		{
			name: "without a GPU list the table is kept and throughputs change",
			file: `{"date": "2026-12-01", "source": "measured", "throughput": [
  {"model": "Qwen/Qwen3-8B", "gpu": "h100-80gb", "tokens_per_second": 5000}
]}`,
			check: func(t *testing.T, c *Catalog) {
				tp, _ := c.Throughput("Qwen/Qwen3-8B", "h100-80gb")
				if tp.TokensPerSecond != 5000 || tp.MicroBatchSeconds != 0.1 || tp.Source == "" {
					t.Errorf("Throughput = %+v, want 5000 tokens/s and the built-in rest", tp)
				}
				if len(c.GPUs()) != 6 || c.Prices().Source != "measured" {
					t.Errorf("GPUs() has %d entries, source %q, want 6 and the file's", len(c.GPUs()), c.Prices().Source)
				}
			},
		},
		{
			name: "a new GPU with its throughput figures is added",
			file: newGPUFile(""),
			check: func(t *testing.T, c *Catalog) {
				g, err := c.GPU("b200-180gb")
				if err != nil || g.UsableMemoryGiB != 178 {
					t.Errorf("GPU(b200-180gb) = %+v, %v", g, err)
				}
				if _, err := c.Throughput(DefaultModelID, "b200-180gb"); err != nil {
					t.Errorf("Throughput(default, b200) error %v", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := base.WithOverridesJSON("prices.json", []byte(tt.file))
			if err != nil {
				t.Fatalf("WithOverridesJSON() error:\n%v", err)
			}
			tt.check(t, c)
		})
	}
}

func newGPUFile(skipModel string) string {
	var tps []string
	for _, m := range []string{DefaultModelID, "Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-8B"} {
		if m == skipModel {
			continue
		}
		tps = append(tps, `{"model": "`+m+`", "gpu": "b200-180gb", "tokens_per_second": 9000, "micro_batch_seconds": 1, "uncertainty": 0.3, "source": "guess"}`)
	}
	return `{"date": "2026-12-01", "gpus": [
  {"id": "h100-80gb"},
  {"id": "b200-180gb", "name": "B200 180GB", "pool": "BLACKWELL_180", "runpod_gpu_type_ids": ["NVIDIA B200"],
   "memory_gib": 180, "usable_memory_gib": 178, "price_usd_per_second": 0.0024}
], "throughput": [
  ` + strings.Join(tps, ",\n  ") + `
]}`
}

func TestWithOverridesJSONReportsWhereEntriesAreBad(t *testing.T) {
	base := Default()
	tests := []struct {
		name string
		file string
		want []string // "line:col: text" fragments, every one must appear
	}{
		{
			name: "a syntax error is reported at its line and column",
			file: "{\"date\": \"2026-12-01\",\n \"gpus\": [}\n",
			want: []string{"prices.json:2:", "invalid JSON"},
		},
		{
			name: "a missing date is reported",
			file: `{"gpus": [{"id": "h100-80gb"}]}`,
			want: []string{"date: is required"},
		},
		{
			name: "every bad GPU entry is reported at its own line",
			file: `{"date": "2026-12-01", "gpus": [
  {"id": "h100-80gb", "price_usd_per_second": -1},
  {"id": "a100-80gb", "price": 1},
  {"id": "l40s-48gb", "memory_gib": "48"},
  {"id": "b200-180gb", "price_usd_per_second": 0.002},
  {"name": "no id"},
  {"id": "a100-80gb"}
]}`,
			want: []string{
				`prices.json:2:3: gpus[0] ("h100-80gb"): price_usd_per_second must be > 0`,
				`prices.json:3:3: gpus[1]: unknown field "price"`,
				`prices.json:4:3: gpus[2]: memory_gib: want a number, got string`,
				`prices.json:5:3: gpus[3] ("b200-180gb"): a GPU that is not built in needs name, pool, runpod_gpu_type_ids, memory_gib, usable_memory_gib`,
				`prices.json:6:3: gpus[4].id: is required`,
			},
		},
		{
			name: "a repeated GPU is reported",
			file: `{"date": "2026-12-01", "gpus": [{"id": "h100-80gb"},
 {"id": "h100-80gb"}]}`,
			want: []string{`prices.json:2:2: gpus[1] ("h100-80gb"): listed twice`},
		},
		{
			name: "bad throughput entries are reported at their lines",
			file: `{"date": "2026-12-01", "throughput": [
  {"model": "Qwen/Qwen9", "gpu": "h100-80gb", "tokens_per_second": 1},
  {"model": "Qwen/Qwen3-8B", "gpu": "tpu-v5", "tokens_per_second": 1},
  {"model": "Qwen/Qwen3-8B", "gpu": "h100-80gb", "uncertainty": 2}
]}`,
			want: []string{
				`prices.json:2:3: throughput[0].model: unknown model "Qwen/Qwen9"`,
				`prices.json:3:3: throughput[1].gpu: unknown GPU "tpu-v5"`,
				`prices.json:4:3: throughput[2] (Qwen/Qwen3-8B on h100-80gb): uncertainty must be between 0 and 0.9`,
			},
		},
		{
			name: "a new GPU without a figure for every model is reported at the GPU",
			file: newGPUFile("Qwen/Qwen3-8B"),
			want: []string{`prices.json:3:3: gpus ("b200-180gb"): no throughput figure for Qwen/Qwen3-8B`},
		},
		{
			name: "unknown top-level fields and a bad date are reported",
			file: `{"date": "01/12/2026", "currency": "EUR"}`,
			want: []string{`prices.json:1:10: date: want YYYY-MM-DD`, `prices.json:1:24: unknown field "currency"`},
		},
		{
			name: "a file that is not an object is refused",
			file: `[1, 2]`,
			want: []string{"must hold a JSON object"},
		},
		{
			name: "gpus that is not an array is refused",
			file: `{"date": "2026-12-01", "gpus": {"id": "h100-80gb"}}`,
			want: []string{`prices.json:1:32: gpus: must be an array`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := base.WithOverridesJSON("prices.json", []byte(tt.file))
			var oe *OverridesError
			if !errors.As(err, &oe) {
				t.Fatalf("WithOverridesJSON() error = %v, want an *OverridesError", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("WithOverridesJSON() error =\n%s\nwant it to contain %q", msg, w)
				}
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "prices.json")
	if err := os.WriteFile(good, []byte(`{"date": "2027-01-02", "gpus": [{"id": "h200-141gb", "price_usd_per_second": 0.0015}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		wantDate string
		wantErr  string
	}{
		{"no variable gives the built-in table", "", DefaultPricesDate, ""},
		{"a file named by the variable is applied", good, "2027-01-02", ""},
		{"a missing file is an error naming the variable", filepath.Join(dir, "missing.json"), "", PricesFileEnv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(func(k string) string {
				if k == PricesFileEnv {
					return tt.path
				}
				return ""
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("FromEnv() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || c.Prices().Date != tt.wantDate {
				t.Errorf("FromEnv() = date %v, %v, want %q, nil", c.Prices().Date, err, tt.wantDate)
			}
		})
	}
}
