package media

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// sweepEvery is how often abandoned uploads are looked for.
const sweepEvery = time.Hour

// Run removes abandoned uploads every hour until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		if n, err := s.Sweep(ctx, time.Now()); err != nil {
			s.logger.WarnContext(ctx, "sweep abandoned uploads", "err", err)
		} else if n > 0 {
			s.logger.InfoContext(ctx, "removed abandoned uploads", "count", n, "older_than", s.cfg.UploadTTL)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep removes unfinished uploads nobody has written to for longer than
// the upload TTL and returns how many. A phone may resume days later, so
// the TTL is long; without a sweep, every photo a phone gave up on would
// stay on disk forever. Stored media are never touched.
func (s *Service) Sweep(ctx context.Context, now time.Time) (int, error) {
	entries, err := os.ReadDir(s.files.Path)
	if err != nil {
		return 0, fmt.Errorf("list uploads: %w", err)
	}
	removed := 0
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".info")
		if !ok || !uploadIDPattern.MatchString(id) {
			continue
		}
		if !s.idle(id, now) {
			continue
		}
		gone, err := s.remove(ctx, id, now)
		if err != nil {
			return removed, err
		}
		if gone {
			removed++
		}
	}
	return removed, nil
}

// idle reports whether the upload's data and info were last written
// before now minus the TTL.
func (s *Service) idle(id string, now time.Time) bool {
	for _, name := range []string{id, id + ".info"} {
		fi, err := os.Stat(filepath.Join(s.files.Path, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil || now.Sub(fi.ModTime()) < s.cfg.UploadTTL {
			return false
		}
	}
	return true
}

// remove deletes one upload under its lock, checking again that it is
// still idle: a phone may have resumed it a moment ago.
func (s *Service) remove(ctx context.Context, id string, now time.Time) (bool, error) {
	lock, err := s.locker.NewLock(id)
	if err != nil {
		return false, fmt.Errorf("lock upload %s: %w", id, err)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := lock.Lock(lctx, func() {}); err != nil {
		return false, nil // in use right now: not abandoned
	}
	defer lock.Unlock()
	if !s.idle(id, now) {
		return false, nil
	}
	up, err := s.files.GetUpload(ctx, id)
	if err != nil {
		return false, fmt.Errorf("open upload %s: %w", id, err)
	}
	if err := s.files.AsTerminatableUpload(up).Terminate(ctx); err != nil {
		return false, fmt.Errorf("remove upload %s: %w", id, err)
	}
	return true, nil
}
