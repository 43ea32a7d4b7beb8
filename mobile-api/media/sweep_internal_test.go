package media

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tus/tusd/v2/pkg/handler"
)

func TestSweep(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := New(Config{Dir: dir, MaxSize: 1 << 20, UploadTTL: 24 * time.Hour}, Deps{Pool: pgtest.MustDB(t), Logger: slog.New(slog.DiscardHandler), BasePath: "/mobile/v1/media/"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	newUpload := func() string {
		up, err := s.files.NewUpload(ctx, handler.FileInfo{Size: 100, MetaData: handler.MetaData{}})
		if err != nil {
			t.Fatal(err)
		}
		info, err := up.GetInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.ID
	}
	backdate := func(path string, age time.Duration) {
		old := time.Now().Add(-age)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	abandoned, resumed, fresh := newUpload(), newUpload(), newUpload()
	for _, name := range []string{abandoned, abandoned + ".info", resumed + ".info"} {
		backdate(filepath.Join(s.files.Path, name), 48*time.Hour)
	}
	// resumed: its data file was written recently (a PATCH), only its info is old.
	stored := filepath.Join(dir, "sha256", "ab", "abstored")
	os.MkdirAll(filepath.Dir(stored), 0o750)
	os.WriteFile(stored, []byte("a photo"), 0o640)
	backdate(stored, 365*24*time.Hour)

	n, err := s.Sweep(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("removed %d uploads, want 1", n)
	}
	for id, want := range map[string]bool{abandoned: false, resumed: true, fresh: true} {
		_, err := os.Stat(filepath.Join(s.files.Path, id+".info"))
		if got := err == nil; got != want {
			t.Errorf("upload %s kept = %v, want %v", id, got, want)
		}
	}
	if _, err := os.Stat(stored); err != nil {
		t.Errorf("a stored medium was touched: %v", err)
	}
}
