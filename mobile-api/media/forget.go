package media

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Forget deletes media for good, as a farmer's erasure requires: each
// stored file is overwritten with zeros and synced before it is unlinked
// (so that a file system reusing blocks in place does not keep the photo,
// and so that any other hard link to the same bytes holds zeros), and
// unfinished uploads announcing the same content are shredded and removed
// too. The caller has deleted the media's rows and made sure no other
// farmer's record references them. Media already gone are no error. It
// returns how many stored files and uploads it removed.
func (s *Service) Forget(ctx context.Context, hashes []string) (files, uploads int, err error) {
	var want []string
	for _, h := range hashes {
		if ValidHash(h) {
			want = append(want, h)
		}
	}
	if len(want) == 0 {
		return 0, 0, nil
	}
	entries, err := os.ReadDir(s.files.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("list uploads: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".info")
		if !ok || !uploadIDPattern.MatchString(id) {
			continue
		}
		info, err := s.info(ctx, id)
		if err != nil || !slices.Contains(want, info.MetaData[MetaSHA256]) {
			continue
		}
		gone, err := s.forgetUpload(ctx, id)
		if err != nil {
			return files, uploads, err
		}
		if gone {
			uploads++
		}
	}
	for _, h := range want {
		gone, err := shred(s.pathOf(h))
		if err != nil {
			return files, uploads, fmt.Errorf("delete media %s: %w", h, err)
		}
		if gone {
			files++
		}
	}
	return files, uploads, nil
}

// forgetUpload shreds and removes one unfinished upload under its lock.
func (s *Service) forgetUpload(ctx context.Context, id string) (bool, error) {
	lock, err := s.locker.NewLock(id)
	if err != nil {
		return false, fmt.Errorf("lock upload %s: %w", id, err)
	}
	if err := lock.Lock(ctx, func() {}); err != nil {
		return false, fmt.Errorf("lock upload %s: %w", id, err)
	}
	defer lock.Unlock()
	if _, err := shred(filepath.Join(s.files.Path, id)); err != nil {
		return false, fmt.Errorf("shred upload %s: %w", id, err)
	}
	up, err := s.files.GetUpload(ctx, id)
	if err != nil {
		return false, nil // removed meanwhile
	}
	if err := s.files.AsTerminatableUpload(up).Terminate(ctx); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("remove upload %s: %w", id, err)
	}
	return true, nil
}

// shred overwrites a file with zeros, syncs it and unlinks it. It reports
// whether there was a file.
func shred(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	fi, err := f.Stat()
	if err == nil {
		zeros := make([]byte, 64<<10)
		for left := fi.Size(); left > 0 && err == nil; left -= int64(len(zeros)) {
			_, err = f.Write(zeros[:min(left, int64(len(zeros)))])
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return true, err
	}
	defer d.Close()
	return true, d.Sync()
}
