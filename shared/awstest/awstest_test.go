package awstest

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// recorder notes a skip or a failure instead of acting on it.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Skipf(f string, args ...any)  { r.skipped = fmt.Sprintf(f, args...) }
func (r *recorder) Fatalf(f string, args ...any) { r.failed = fmt.Sprintf(f, args...) }

func TestAMissingEmulatorSkipsUnlessRequired(t *testing.T) {
	tests := []struct {
		require  string
		wantFail bool
	}{
		{"", false},
		{"0", false},
		{"1", true},
	}
	for _, tt := range tests {
		t.Run(RequireEnv+"="+tt.require, func(t *testing.T) {
			t.Setenv(RequireEnv, tt.require)
			r := &recorder{TB: t}
			Unavailable(r, "moto server", fmt.Errorf("not installed"), "pip install it")
			msg := r.skipped
			if tt.wantFail {
				msg = r.failed
			}
			if (r.failed != "") != tt.wantFail || (r.skipped != "") == tt.wantFail {
				t.Fatalf("skipped %q, failed %q; want a failure %v", r.skipped, r.failed, tt.wantFail)
			}
			for _, want := range []string{"moto server", "not installed", "pip install it", RequireEnv} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not mention %q", msg, want)
				}
			}
		})
	}
}

func TestPinnedVersionsAgree(t *testing.T) {
	data, err := os.ReadFile("../../infra/emulators/go-tools.txt")
	if err != nil {
		t.Fatal(err)
	}
	if want := "github.com/versity/versitygw/cmd/versitygw@" + VersityGWVersion; !strings.Contains(string(data), want+"\n") {
		t.Errorf("infra/emulators/go-tools.txt does not pin %s", want)
	}
}

func TestEmulatorsStartAndAnswer(t *testing.T) {
	for name, get := range map[string]func(testing.TB) *Emulator{"moto": Moto, "versitygw": VersityGW} {
		t.Run(name, func(t *testing.T) {
			e := get(t)
			if !strings.HasPrefix(e.Endpoint, "http://127.0.0.1:") || e.Config.Credentials == nil || e.Config.BaseEndpoint == nil {
				t.Errorf("%s = %+v, want a loopback endpoint and a config that reaches it", name, e)
			}
		})
	}
}

func TestMain(m *testing.M) { Main(m) }
