package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/postgres"
)

// Errors of the final PATCH that delete the upload: retrying the same bytes
// cannot succeed.
var (
	errChecksumMismatch = "ERR_CHECKSUM_MISMATCH"
	errContentMismatch  = "ERR_CONTENT_TYPE_MISMATCH"
)

// refusal is content that will never be kept.
type refusal struct{ err handler.Error }

func (r *refusal) Error() string { return r.err.Error() }

// complete keeps a fully received upload and removes it from the uploads
// in progress. Content that is not what was announced is deleted and
// refused; any other failure leaves the upload in place so that a PATCH at
// its full offset completes it later. The error is always a tus error.
func (s *Service) complete(ctx context.Context, id string) error {
	up, err := s.files.GetUpload(ctx, id)
	if err != nil {
		return err // tusd's own not-found
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		return s.notStored(ctx, id, err)
	}
	err = s.keep(ctx, info)
	var refused *refusal
	switch {
	case errors.As(err, &refused):
		s.logger.WarnContext(ctx, "media refused", "upload", id, "agent", info.MetaData[metaAgent], "reason", refused.err.Message)
		if terr := s.files.AsTerminatableUpload(up).Terminate(ctx); terr != nil {
			s.logger.ErrorContext(ctx, "delete refused upload", "upload", id, "err", terr)
		}
		return refused.err
	case err != nil:
		return s.notStored(ctx, id, err)
	}
	// Stored: what is left of the upload is its info file (and its bytes
	// when the same content was already stored).
	if err := s.files.AsTerminatableUpload(up).Terminate(ctx); err != nil {
		s.logger.WarnContext(ctx, "remove stored upload", "upload", id, "err", err)
	}
	return nil
}

func (s *Service) notStored(ctx context.Context, id string, err error) error {
	s.logger.ErrorContext(ctx, "store media", "upload", id, "err", err)
	return handler.NewError("ERR_MEDIA_NOT_STORED", "all bytes arrived but could not be stored yet; retry the last PATCH", http.StatusInternalServerError)
}

// keep checks a complete upload against what was announced, links its
// bytes to their content address and records them. A content address that
// already exists is the same content: linking is skipped. The row is
// written only once the bytes are durably at their address.
func (s *Service) keep(ctx context.Context, info handler.FileInfo) error {
	want, ct := info.MetaData[MetaSHA256], info.MetaData[MetaContentType]
	src := info.Storage[filestore.StorageKeyPath]
	sum, sniffed, err := inspect(src)
	if err != nil {
		return fmt.Errorf("inspect upload %s: %w", info.ID, err)
	}
	if sum != want {
		return &refusal{handler.NewError(errChecksumMismatch,
			fmt.Sprintf("the uploaded bytes hash to %s, not to the announced sha256 %s; the upload was deleted", sum, want), 460)}
	}
	if sniffed != ct {
		return &refusal{handler.NewError(errContentMismatch,
			fmt.Sprintf("the uploaded bytes are %s, not the announced content_type %s; the upload was deleted", sniffed, ct), http.StatusUnsupportedMediaType)}
	}
	dst := s.pathOf(sum)
	if err := link(src, dst); err != nil {
		return fmt.Errorf("store %s: %w", sum, err)
	}
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO mobile.media (sha256, size, content_type, agent_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (sha256) DO NOTHING`, sum, info.Size, ct, info.MetaData[metaAgent]); err != nil {
		return fmt.Errorf("record media %s: %w", sum, err)
	}
	s.logger.InfoContext(ctx, "media stored", "sha256", sum, "size", info.Size, "content_type", ct, "agent", info.MetaData[metaAgent])
	return nil
}

// pathOf is the content address of media: <dir>/sha256/<first2>/<hash>.
func (s *Service) pathOf(sum string) string {
	return filepath.Join(s.cfg.Dir, "sha256", sum[:2], sum)
}

// inspect hashes a file, sniffs its content type and flushes it to disk.
func inspect(path string) (sum, contentType string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", "", err
	}
	head = head[:n]
	h := sha256.New()
	if _, err := io.Copy(h, io.MultiReader(bytes.NewReader(head), f)); err != nil {
		return "", "", err
	}
	if err := f.Sync(); err != nil {
		return "", "", err
	}
	return hex.EncodeToString(h.Sum(nil)), http.DetectContentType(head), nil
}

// link gives src's bytes the name dst, atomically: a hard link either
// creates dst whole or finds it there already. src stays, so a failure
// later still has the upload to retry from.
func link(src, dst string) error {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := os.Link(src, dst); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Media describes stored media.
type Media struct {
	SHA256      string    `json:"sha256"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	StoredAt    time.Time `json:"stored_at"`
}

// Lookup returns the stored media with this hash, or a not-found error.
func (s *Service) Lookup(ctx context.Context, sum string) (Media, error) {
	m := Media{SHA256: sum}
	err := s.pool.QueryRow(ctx, `SELECT size, content_type, stored_at FROM mobile.media WHERE sha256 = $1`, sum).
		Scan(&m.Size, &m.ContentType, &m.StoredAt)
	if err != nil {
		return Media{}, postgres.MapError(err, "no media with this hash is stored", "")
	}
	return m, nil
}

// byHash lets the app skip uploading media the server already has.
func (s *Service) byHash(c echo.Context) error {
	sum := c.Param("sha256")
	if !ValidHash(sum) {
		return apperr.Fields("invalid media hash", apperr.FieldError{Field: "sha256", Message: "must be 64 lowercase hex digits"})
	}
	m, err := s.Lookup(c.Request().Context(), sum)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}
