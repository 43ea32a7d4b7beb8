package app

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOrder(t *testing.T) {
	t.Run("OK_DependenciesFirst", func(t *testing.T) {
		got, err := order([]string{All})
		if err != nil {
			t.Fatal(err)
		}
		for name, m := range modules {
			i := slices.Index(got, name)
			if i < 0 {
				if name == Demo {
					continue // only with -demo
				}
				t.Errorf("all does not include %s", name)
				continue
			}
			for _, d := range m.deps {
				if j := slices.Index(got, d); j > i {
					t.Errorf("%s starts before its dependency %s: %v", name, d, got)
				}
			}
		}
	})
	t.Run("OK_SubsetRunsOnlyWhatItNeeds", func(t *testing.T) {
		got, err := order([]string{Ingest})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{NATSServer, NATS, Postgres, Server, Ingest}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("order(ingest) (-want +got):\n%s", diff)
		}
	})
	t.Run("ErrUnknownModule", func(t *testing.T) {
		_, err := order([]string{"ingest", "billing"})
		if err == nil || !strings.Contains(err.Error(), `"billing"`) {
			t.Errorf("err = %v, want one naming the unknown module", err)
		}
	})
}

// TestMigrationOrder: every module that declares migrations is applied,
// exactly once, by the postgres module and `tani migrate`.
func TestMigrationOrder(t *testing.T) {
	seen := map[string]int{}
	for _, name := range migrationOrder {
		seen[name]++
	}
	for name, m := range modules {
		if len(m.migrations) > 0 && seen[name] != 1 {
			t.Errorf("module %s declares migrations but appears %d times in migrationOrder, want once", name, seen[name])
		}
	}
	names := map[string]bool{}
	for _, m := range Migrations() {
		if names[m.Name] {
			t.Errorf("schema %s applied twice", m.Name)
		}
		names[m.Name] = true
	}
}

func TestModulesWithARealNetwork(t *testing.T) {
	all, err := order([]string{All})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("DevnetByDefault", func(t *testing.T) {
		if got := withoutUnused(slices.Clone(all), Config{}); !slices.Contains(got, FabricDevnet) {
			t.Errorf("got modules %v, want %s without -fabric.endpoint", got, FabricDevnet)
		}
	})
	t.Run("NoDevnetWithAnEndpoint", func(t *testing.T) {
		var cfg Config
		cfg.Fabric.Endpoint = "127.0.0.1:17060"
		if got := withoutUnused(slices.Clone(all), cfg); slices.Contains(got, FabricDevnet) || !slices.Contains(got, Anchor) {
			t.Errorf("got modules %v, want anchor without %s when -fabric.endpoint is set", got, FabricDevnet)
		}
	})
}

// TestRecordMemo: the memo of checked records exists only in a process
// where /sync runs beside a stage that reads what it publishes, with one
// take per such stage.
func TestRecordMemo(t *testing.T) {
	for _, tt := range []struct {
		modules []string
		readers int // 0: no memo
	}{
		{[]string{MobileAPI, Ingest}, 1},
		{[]string{MobileAPI, Ingest, Attest}, 2},
		{[]string{MobileAPI, Attest}, 1},
		{[]string{MobileAPI}, 0},
		{[]string{Ingest, Attest}, 0},
	} {
		m := recordMemo(tt.modules)
		switch {
		case tt.readers == 0 && m != nil:
			t.Errorf("%v: a memo, want none", tt.modules)
		case tt.readers > 0 && (m == nil || m.Readers() != tt.readers):
			t.Errorf("%v: memo %v, want one taken by %d stages", tt.modules, m, tt.readers)
		}
	}
}
