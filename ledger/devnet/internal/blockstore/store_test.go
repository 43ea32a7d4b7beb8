package blockstore

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
)

func block(num uint64, prev []byte, data ...string) *cb.Block {
	b := &cb.Block{Header: &cb.BlockHeader{Number: num, PreviousHash: prev}, Data: &cb.BlockData{}}
	for _, d := range data {
		b.Data.Data = append(b.Data.Data, []byte(d))
	}
	b.Header.DataHash = DataHash(b.Data)
	return b
}

func TestReopenCutsTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.blocks")
	log := slog.New(slog.DiscardHandler)
	s, err := Open(path, log)
	if err != nil {
		t.Fatal(err)
	}
	b0 := block(0, nil, "genesis")
	b1 := block(1, HeaderHash(b0.Header), "tx1", "tx2")
	for _, b := range []*cb.Block{b0, b1} {
		if err := s.Append(b); err != nil {
			t.Fatalf("append %d: %v", b.Header.Number, err)
		}
	}
	t.Run("ErrBrokenChain", func(t *testing.T) {
		if err := s.Append(block(2, []byte("wrong"), "tx3")); err == nil {
			t.Error("appended block with wrong previous hash, want error")
		}
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash in the middle of appending block 2.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 9, 9})
	f.Close()

	s, err = Open(path, log)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if got := s.Height(); got != 2 {
		t.Fatalf("height after reopen = %d, want 2", got)
	}
	b2 := block(2, HeaderHash(b1.Header), "tx3")
	if err := s.Append(b2); err != nil {
		t.Fatalf("append after torn tail: %v", err)
	}
	got, err := s.Block(2)
	if err != nil || string(got.Data.Data[0]) != "tx3" {
		t.Errorf("block 2 = %v, %v; want tx3", got, err)
	}
}
