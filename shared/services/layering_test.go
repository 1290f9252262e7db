package services_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/brightrun/brightrun/"

// deps returns every package of the module with its dependencies, as
// `go list -deps` sees them (tests excluded).
func deps(t *testing.T) map[string][]string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goTool, "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[f[0]] = f[1:]
	}
	if len(m) < 20 {
		t.Fatalf("go list found %d packages of the module, want them all", len(m))
	}
	return m
}

// theHTTPLayerAndAbove are the packages that may depend on shared/httpapi:
// the HTTP layer itself, the wiring, and the programs that wire.
func theHTTPLayerAndAbove(pkg string) bool {
	rel := strings.TrimPrefix(pkg, module)
	switch {
	case rel == "shared/httpapi", rel == "shared/services", rel == "shared/awsapp", rel == "shared/localstack":
		return true
	case strings.HasPrefix(rel, "functions/"), rel == "cmd/localstack", rel == "tools/benchload":
		return true
	}
	return false
}

func TestNothingBelowTheHTTPLayerImportsIt(t *testing.T) {
	for pkg, ds := range deps(t) {
		if theHTTPLayerAndAbove(pkg) {
			continue
		}
		if slices.Contains(ds, module+"shared/httpapi") {
			t.Errorf("%s depends on shared/httpapi; only the HTTP layer and the wiring above it may", pkg)
		}
	}
}

func TestLayersDependOnlyDownwards(t *testing.T) {
	all := deps(t)
	tests := []struct {
		pkg    string
		mustNo []string
	}{
		// The CLI shares the wire types, not the server, and links no
		// Lambda library.
		{"cmd/brightrun", []string{module + "shared/httpapi", module + "shared/ingest", "github.com/aws/aws-lambda-go", "github.com/awslabs/aws-lambda-go-api-proxy"}},
		{"shared/client", []string{module + "shared/httpapi", "github.com/aws/aws-lambda-go", "github.com/awslabs/aws-lambda-go-api-proxy"}},
		// The domain depends on no validator, service or adapter.
		{"shared/pipeline", []string{module + "shared/dataset", module + "shared/dispatch", module + "shared/reconcile", module + "shared/ingest", "github.com/aws/"}},
		// The services call the domain, not one another.
		{"shared/dispatch", []string{module + "shared/reconcile", module + "shared/ingest"}},
		{"shared/reconcile", []string{module + "shared/dispatch", module + "shared/ingest"}},
		{"shared/ingest", []string{module + "shared/dispatch", module + "shared/reconcile"}},
	}
	for _, tt := range tests {
		ds, ok := all[module+tt.pkg]
		if !ok {
			t.Errorf("package %s not found", tt.pkg)
			continue
		}
		for _, d := range ds {
			for _, bad := range tt.mustNo {
				if d == bad || strings.HasPrefix(d, strings.TrimSuffix(bad, "/")+"/") {
					t.Errorf("%s depends on %s", tt.pkg, d)
				}
			}
		}
	}
}
