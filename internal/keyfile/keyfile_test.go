package keyfile_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tani-platform/tani/internal/keyfile"
)

// testKind is a 32-byte hex secret, like the real kinds but small.
var testKind = keyfile.Kind{
	Name: "test key",
	Flag: "test.key-file",
	File: "test.key",
	New: func() ([]byte, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(b) + "\n"), nil
	},
	Check: func(data []byte) error {
		b, err := hex.DecodeString(strings.TrimSpace(string(data)))
		if err != nil || len(b) != 32 {
			return errors.New("want 64 hex digits")
		}
		return nil
	},
}

// The helper process of TestLoadOrCreate_ProcessesRace: it creates or
// loads the key named by the environment and prints it.
func TestMain(m *testing.M) {
	if path := os.Getenv("KEYFILE_TEST_RACE_PATH"); path != "" {
		data, _, err := keyfile.LoadOrCreate(path, testKind)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(data)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestLoadOrCreate(t *testing.T) {
	t.Run("OK_CreatesOnceThenLoads", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "deep", "dir", "test.key")
		first, created, err := keyfile.LoadOrCreate(path, testKind)
		if err != nil || !created {
			t.Fatalf("first call: created %v, err %v; want a created key", created, err)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != keyfile.SecretPerm {
			t.Errorf("key file mode: got %v %v, want %v", fi.Mode(), err, keyfile.SecretPerm)
		}
		if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("directory mode: got %v %v, want 0700", di.Mode(), err)
		}
		again, created, err := keyfile.LoadOrCreate(path, testKind)
		if err != nil || created || !bytes.Equal(again, first) {
			t.Errorf("second call: created %v, err %v, same bytes %v; want the first key loaded", created, err, bytes.Equal(again, first))
		}
		assertNoTempFiles(t, filepath.Dir(path))
	})

	t.Run("OK_GoroutinesRace_OneKey", func(t *testing.T) {
		for range 20 {
			path := filepath.Join(t.TempDir(), "test.key")
			const n = 32
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				got     [n][]byte
				created [n]bool
				errs    [n]error
			)
			for i := range n {
				wg.Go(func() {
					<-start
					got[i], created[i], errs[i] = keyfile.LoadOrCreate(path, testKind)
				})
			}
			close(start)
			wg.Wait()
			creators := 0
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("goroutine %d: %v", i, errs[i])
				}
				if !bytes.Equal(got[i], got[0]) {
					t.Fatalf("goroutine %d got another key than goroutine 0", i)
				}
				if created[i] {
					creators++
				}
			}
			if creators != 1 {
				t.Fatalf("%d goroutines say they created the key, want exactly 1", creators)
			}
			onDisk, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(onDisk, got[0]) {
				t.Fatalf("the file differs from the key every goroutine returned (%v)", err)
			}
			assertNoTempFiles(t, filepath.Dir(path))
		}
	})

	t.Run("OK_ProcessesRace_OneKey", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts processes")
		}
		path := filepath.Join(t.TempDir(), "test.key")
		const n = 8
		cmds := make([]*exec.Cmd, n)
		outs := make([]bytes.Buffer, n)
		for i := range cmds {
			cmds[i] = exec.Command(os.Args[0], "-test.run=^$")
			cmds[i].Env = append(os.Environ(), "KEYFILE_TEST_RACE_PATH="+path)
			cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
		}
		for _, c := range cmds { // started back to back, so they race
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range cmds {
			if err := c.Wait(); err != nil {
				t.Fatalf("process %d: %v: %s", i, err, outs[i].String())
			}
		}
		onDisk, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range outs {
			if !bytes.Equal(outs[i].Bytes(), onDisk) {
				t.Errorf("process %d used %q, the file holds %q", i, outs[i].String(), onDisk)
			}
		}
		assertNoTempFiles(t, filepath.Dir(path))
	})

	t.Run("ErrMalformedFile", func(t *testing.T) {
		for name, content := range map[string]string{
			"not hex":   "this is not the key you are looking for\n",
			"too short": "abcd\n",
			"empty":     "",
			"blank":     " \n\n",
		} {
			t.Run(name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "test.key")
				if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				_, _, err := keyfile.LoadOrCreate(path, testKind)
				if err == nil || !strings.Contains(err.Error(), "test key "+path+" is malformed") {
					t.Fatalf("err = %v, want one naming the key, its file and that it is malformed", err)
				}
				if strings.TrimSpace(content) != "" && strings.Contains(err.Error(), strings.TrimSpace(content)) {
					t.Errorf("the error %q quotes the file's content", err)
				}
				if after, _ := os.ReadFile(path); string(after) != content {
					t.Errorf("the malformed file was changed to %q; it must be left for a person to look at", after)
				}
			})
		}
	})

	t.Run("ErrDirectoryIsAFile", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "keys")
		if err := os.WriteFile(parent, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := keyfile.LoadOrCreate(filepath.Join(parent, "test.key"), testKind)
		if err == nil || !strings.Contains(err.Error(), "test key") {
			t.Errorf("err = %v, want an error naming the key", err)
		}
	})
}

func TestLoad(t *testing.T) {
	t.Run("ErrMissingFile_NotExist", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "test.key")
		_, err := keyfile.Load(path, testKind)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "test key") || !strings.Contains(err.Error(), path) {
			t.Errorf("err = %v, want fs.ErrNotExist naming the key and %s", err, path)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Error("Load created the file; only LoadOrCreate may")
		}
	})
	t.Run("OK", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "test.key")
		want, _ := testKind.New()
		if err := os.WriteFile(path, want, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := keyfile.Load(path, testKind); err != nil || !bytes.Equal(got, want) {
			t.Errorf("got %q, %v; want the file's bytes", got, err)
		}
	})
}

func TestCreate(t *testing.T) {
	t.Run("ErrExists_FileUntouched", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "f")
		if err := keyfile.Create(path, []byte("first"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := keyfile.Create(path, []byte("second"), 0o600)
		if !errors.Is(err, fs.ErrExist) {
			t.Errorf("err = %v, want fs.ErrExist", err)
		}
		if got, _ := os.ReadFile(path); string(got) != "first" {
			t.Errorf("file holds %q, want the first content", got)
		}
		assertNoTempFiles(t, filepath.Dir(path))
	})
	t.Run("OK_PublicMode", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "f.pub")
		if err := keyfile.Create(path, []byte("public"), 0o644); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("mode %v (%v), want 0644", fi.Mode(), err)
		}
	})
}

func TestReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := keyfile.Create(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.Replace(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if err != nil || string(got) != "new" || fi.Mode().Perm() != 0o600 {
		t.Errorf("got %q mode %v (%v), want \"new\" with mode 0600", got, fi.Mode(), err)
	}
	assertNoTempFiles(t, filepath.Dir(path))
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
