package keyfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Kind describes one kind of secret file: how to name it to a person, which
// flag points at it, what it is called in a key directory, how to make a
// fresh one and how to tell a well-formed one.
type Kind struct {
	// Name is how messages call the secret, e.g. "PII key".
	Name string
	// Flag is the `tani up` flag that names the file, without the dash,
	// e.g. "pii.key-file".
	Flag string
	// File is the file's name in a key directory (`tani keys init DIR`)
	// and in the data directory of a process running target all.
	File string
	// New returns the contents of a fresh file.
	New func() ([]byte, error)
	// Check returns nil if data is a well-formed file of this kind. Its
	// errors say what is wrong without quoting the data.
	Check func(data []byte) error
}

// SecretPerm is the mode of every secret file this package creates.
const SecretPerm fs.FileMode = 0o600

// Load reads the secret file at path and checks it. A missing file is an
// error that wraps fs.ErrNotExist.
func Load(path string, k Kind) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.Name, err)
	}
	if err := check(k, data); err != nil {
		return nil, fmt.Errorf("%s %s is malformed: %w", k.Name, path, err)
	}
	return data, nil
}

// LoadOrCreate reads the secret file at path, creating it with k.New when
// it does not exist. When several goroutines or processes race to create
// the same file, exactly one creates it and every caller returns its
// bytes. created reports whether this call wrote the file.
func LoadOrCreate(path string, k Kind) (data []byte, created bool, err error) {
	data, err = Load(path, k)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return data, false, err
	}
	fresh, err := k.New()
	if err != nil {
		return nil, false, fmt.Errorf("%s: generate: %w", k.Name, err)
	}
	if err := check(k, fresh); err != nil {
		return nil, false, fmt.Errorf("%s: generated a malformed key: %w", k.Name, err)
	}
	switch err := Create(path, fresh, SecretPerm); {
	case errors.Is(err, fs.ErrExist):
		// Another process linked its file first: that one is the key.
		data, err := Load(path, k)
		return data, false, err
	case err != nil:
		return nil, false, fmt.Errorf("%s: %w", k.Name, err)
	}
	return fresh, true, nil
}

// Create writes data to a new file at path with mode perm, creating the
// directory (mode 0700) if needed. The file appears complete or not at all:
// data is written and synced under a temporary name in the same directory,
// then hard-linked to path, which fails if path exists. So an existing file
// is never replaced, and the error then wraps fs.ErrExist. The directory
// must be on a filesystem with hard links.
func Create(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// Replace writes data to path with mode perm, atomically replacing any
// file there (write, sync, rename). For deliberate rotation only: a process
// that already read the old secret keeps using it.
func Replace(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a synced temporary file beside path and returns
// its name. os.CreateTemp creates it with mode 0600, so the secret is never
// readable by others, not even for a moment.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create directory for %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(perm)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write %s: %w", path, werr)
	}
	return f.Name(), nil
}

// syncDir makes a new directory entry durable, so a key acknowledged as
// created is not lost by a crash right after.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func check(k Kind, data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("the file is empty")
	}
	return k.Check(data)
}
