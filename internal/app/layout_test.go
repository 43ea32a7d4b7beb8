package app_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tani-platform/tani/"

// TestLayout holds the boundaries docs/ARCHITECTURE.md draws, on the
// production (non-test) import graph, transitively:
//   - only the composition root (internal/app/..., cmd/...) and the devnet
//     itself may depend on the devnet: production code must run against a
//     real Fabric network without linking a development one;
//   - a service never depends on another service or on the composition
//     root: services share Postgres, NATS subjects and HTTP, never code, so
//     any split of targets works.
func TestLayout(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(fields[0], module)
		for _, d := range fields[1:] {
			if rel, ok := strings.CutPrefix(d, module); ok {
				deps[pkg] = append(deps[pkg], rel)
			}
		}
		if _, ok := deps[pkg]; !ok {
			deps[pkg] = nil
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(deps) < 20 {
		t.Fatalf("go list found %d packages; the test is not looking at the module", len(deps))
	}

	t.Run("OK_OnlyTheCompositionRootUsesTheDevnet", func(t *testing.T) {
		for pkg, ds := range deps {
			if under(pkg, "internal/app", "cmd", "ledger/devnet") {
				continue
			}
			for _, d := range ds {
				if under(d, "ledger/devnet") {
					t.Errorf("%s depends on %s: production code must not link the devnet", pkg, d)
				}
			}
		}
	})

	t.Run("OK_ServicesStandAlone", func(t *testing.T) {
		for pkg, ds := range deps {
			svc := serviceOf(pkg)
			if svc == "" {
				continue
			}
			for _, d := range ds {
				if other := serviceOf(d); other != "" && other != svc {
					t.Errorf("service package %s depends on %s of service %s", pkg, d, other)
				}
				if under(d, "internal/app") {
					t.Errorf("service package %s depends on the composition root (%s)", pkg, d)
				}
			}
		}
	})
}

// under reports whether pkg is one of roots or inside one.
func under(pkg string, roots ...string) bool {
	for _, r := range roots {
		if pkg == r || strings.HasPrefix(pkg, r+"/") {
			return true
		}
	}
	return false
}

// serviceOf names the service a package belongs to ("" for none):
// services/<name>/... and mobile-api/... (its client is not the service:
// tools and tests of other services may use it).
func serviceOf(pkg string) string {
	if rest, ok := strings.CutPrefix(pkg, "services/"); ok {
		name, _, _ := strings.Cut(rest, "/")
		return "services/" + name
	}
	if under(pkg, "mobile-api") && !under(pkg, "mobile-api/client") {
		return "mobile-api"
	}
	return ""
}
