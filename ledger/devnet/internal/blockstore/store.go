package blockstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"
)

// recordHeader is a big-endian length followed by a CRC-32C of the payload.
const recordHeader = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Store is an append-only file of length-prefixed, checksummed blocks. All
// blocks are also kept in memory: a devnet chain is small, and serving
// Deliver from memory keeps the file append-only and simple.
type Store struct {
	mu     sync.RWMutex
	f      *os.File
	blocks []*cb.Block
	log    *slog.Logger
}

// Open opens or creates the block file at path and reads every block in it.
// A torn final record (a crash mid-append) is cut off and logged; any other
// inconsistency, such as a broken hash chain, is an error.
func Open(path string, log *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create block directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open block file: %w", err)
	}
	s := &Store{f: f, log: log}
	good, err := s.load()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("truncate block file at %d: %w", good, err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek block file: %w", err)
	}
	return s, nil
}

// load reads all complete records and returns the offset after the last one.
func (s *Store) load() (int64, error) {
	r := bufio.NewReaderSize(s.f, 1<<20)
	var off int64
	hdr := make([]byte, recordHeader)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			if errors.Is(err, io.EOF) {
				return off, nil
			}
			s.log.Warn("cutting torn record header", "offset", off, "error", err)
			return off, nil
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			s.log.Warn("cutting torn record", "offset", off, "error", err)
			return off, nil
		}
		if crc32.Checksum(buf, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			s.log.Warn("cutting record with bad checksum", "offset", off)
			return off, nil
		}
		b := &cb.Block{}
		if err := proto.Unmarshal(buf, b); err != nil {
			return 0, fmt.Errorf("decode block at offset %d: %w", off, err)
		}
		if err := s.check(b); err != nil {
			return 0, fmt.Errorf("load block %d: %w", b.GetHeader().GetNumber(), err)
		}
		s.blocks = append(s.blocks, b)
		off += int64(recordHeader) + int64(n)
	}
}

// check verifies that b extends the chain held in memory.
func (s *Store) check(b *cb.Block) error {
	h := b.GetHeader()
	if want := uint64(len(s.blocks)); h.GetNumber() != want {
		return fmt.Errorf("block number %d, want %d", h.GetNumber(), want)
	}
	if len(s.blocks) > 0 {
		prev := HeaderHash(s.blocks[len(s.blocks)-1].GetHeader())
		if string(prev) != string(h.GetPreviousHash()) {
			return fmt.Errorf("previous hash %x, want %x", h.GetPreviousHash(), prev)
		}
	}
	if string(DataHash(b.GetData())) != string(h.GetDataHash()) {
		return errors.New("data hash does not match block data")
	}
	return nil
}

// Append durably writes b, which must be the next block of the chain.
func (s *Store) Append(b *cb.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(b); err != nil {
		return fmt.Errorf("append block %d: %w", b.GetHeader().GetNumber(), err)
	}
	buf, err := proto.Marshal(b)
	if err != nil {
		return fmt.Errorf("marshal block %d: %w", b.GetHeader().GetNumber(), err)
	}
	rec := make([]byte, recordHeader+len(buf))
	binary.BigEndian.PutUint32(rec[:4], uint32(len(buf)))
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(buf, castagnoli))
	copy(rec[recordHeader:], buf)
	if _, err := s.f.Write(rec); err != nil {
		return fmt.Errorf("write block %d: %w", b.GetHeader().GetNumber(), err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync block %d: %w", b.GetHeader().GetNumber(), err)
	}
	s.blocks = append(s.blocks, b)
	return nil
}

// Height is the number of blocks in the chain.
func (s *Store) Height() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return uint64(len(s.blocks))
}

// Block returns block n. Callers must not modify it.
func (s *Store) Block(n uint64) (*cb.Block, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n >= uint64(len(s.blocks)) {
		return nil, fmt.Errorf("block %d not found (height %d)", n, len(s.blocks))
	}
	return s.blocks[n], nil
}

// Close syncs and closes the block file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.Sync(); err != nil {
		s.f.Close()
		return fmt.Errorf("sync block file: %w", err)
	}
	return s.f.Close()
}
