package events_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tani-platform/tani/internal/events"
)

// notYetProduced are catalogue types no producer records yet: their
// modules' issues are under way. A type listed here that some code does
// record fails the test, so the list only shrinks.
var notYetProduced = []events.Type{}

// TestCatalogue_AgainstTheCode reads the module's production Go source:
// every events.Event a producer builds names a catalogue type, each type
// is recorded by the module the catalogue names as its producer, and every
// catalogue type is recorded somewhere (or listed as not yet produced).
func TestCatalogue_AgainstTheCode(t *testing.T) {
	root := filepath.Join("..", "..")
	consts := map[string]events.Type{} // constant name → type
	fset := token.NewFileSet()
	cat, err := parser.ParseFile(fset, "catalogue.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(cat, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Values) == len(vs.Names) {
			for i, name := range vs.Names {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					if _, ok := events.Lookup(events.Type(v)); ok {
						consts[name.Name] = events.Type(v)
					}
				}
			}
		}
		return true
	})
	if len(consts) != len(events.Catalogue) {
		t.Fatalf("found %d type constants, the catalogue has %d", len(consts), len(events.Catalogue))
	}
	producedBy := map[events.Type][]string{} // type → directories recording it
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok || !isSelector(lit.Type, "events", "Event") {
				return true
			}
			for _, el := range lit.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if k, ok := kv.Key.(*ast.Ident); !ok || k.Name != "Type" {
					continue
				}
				sel, ok := kv.Value.(*ast.SelectorExpr)
				if !ok || !isSelector(sel, "events", sel.Sel.Name) {
					t.Errorf("%s: an event's Type must be a catalogue constant (events.X), got %T", fset.Position(kv.Pos()), kv.Value)
					continue
				}
				typ, ok := consts[sel.Sel.Name]
				if !ok {
					t.Errorf("%s: events.%s is not a catalogue type", fset.Position(kv.Pos()), sel.Sel.Name)
					continue
				}
				dir, _ := filepath.Rel(root, filepath.Dir(path))
				producedBy[typ] = append(producedBy[typ], filepath.ToSlash(dir))
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range events.Catalogue {
		dirs := producedBy[info.Type]
		waiting := slices.Contains(notYetProduced, info.Type)
		switch {
		case len(dirs) == 0 && !waiting:
			t.Errorf("%s: in the catalogue but recorded nowhere", info.Type)
		case len(dirs) > 0 && waiting:
			t.Errorf("%s: recorded by %v; take it off notYetProduced", info.Type, dirs)
		case len(dirs) == 0:
			t.Logf("%s: not yet recorded (producer %s)", info.Type, info.Producer)
		}
		for _, d := range dirs {
			if d != "services/"+info.Producer && !strings.HasPrefix(d, "services/"+info.Producer+"/") {
				t.Errorf("%s: recorded by %s, but the catalogue names %s as its producer", info.Type, d, info.Producer)
			}
		}
	}
}

func isSelector(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == pkg && sel.Sel.Name == name
}
