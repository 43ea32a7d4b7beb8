package media

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/tus/tusd/v2/pkg/filelocker"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/httpserver"
)

// Upload-Metadata keys a client must send when it creates an upload.
const (
	MetaSHA256      = "sha256"       // lowercase hex SHA-256 of the whole content
	MetaContentType = "content_type" // one of ContentTypes
	metaAgent       = "agent_id"     // set by the server from the token, never taken from the client
)

// ContentTypes are the media the app may upload: photos and scanned
// documents.
var ContentTypes = []string{"image/jpeg", "image/png", "application/pdf"}

var (
	hashPattern     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	uploadIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`) // what filestore generates
)

// ValidHash reports whether s is a SHA-256 as media are named by: 64
// lowercase hex digits.
func ValidHash(s string) bool { return hashPattern.MatchString(s) }

// Service receives uploads and answers which media are stored.
type Service struct {
	cfg    Config
	pool   *pgxpool.Pool
	logger *slog.Logger
	files  filestore.FileStore
	locker filelocker.FileLocker
	tus    *handler.UnroutedHandler
}

// Deps are what the composition root hands in.
type Deps struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger
	// BasePath is the path the routes are mounted at, used in the Location
	// of new uploads.
	BasePath string
}

// New wires the service. It validates and does no I/O; Start creates the
// directories.
func New(cfg Config, d Deps) (*Service, error) {
	pool, logger, basePath := d.Pool, d.Logger, d.BasePath
	if pool == nil || logger == nil || basePath == "" {
		return nil, fmt.Errorf("media: Pool, Logger and BasePath are required")
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("media: no directory configured")
	}
	if cfg.MaxSize <= 0 {
		return nil, fmt.Errorf("media: max size must be positive, got %d", cfg.MaxSize)
	}
	s := &Service{
		cfg:    cfg,
		pool:   pool,
		logger: logger,
		files:  filestore.New(filepath.Join(cfg.Dir, "uploads")),
		locker: filelocker.New(filepath.Join(cfg.Dir, "uploads")),
	}
	// Only the core protocol and termination: no deferred length (the size
	// must be known, and checked, before the first byte), no concatenation,
	// no download (stored media are served elsewhere, if ever).
	composer := handler.NewStoreComposer()
	composer.UseCore(s.files)
	composer.UseTerminater(s.files)
	s.locker.UseIn(composer)
	tus, err := handler.NewUnroutedHandler(handler.Config{
		StoreComposer:        composer,
		MaxSize:              cfg.MaxSize,
		BasePath:             basePath,
		DisableDownload:      true,
		DisableConcatenation: true,
		Cors:                 &handler.CorsConfig{Disable: true}, // phones, not browsers
		// Behind the TLS proxy the Location of a new upload must name the
		// public host; a client that forges these headers only misleads
		// itself.
		RespectForwardedHeaders:   true,
		Logger:                    tusLogger(logger),
		PreUploadCreateCallback:   s.admit,
		PreFinishResponseCallback: s.finish,
	})
	if err != nil {
		return nil, fmt.Errorf("media: tus handler: %w", err)
	}
	s.tus = tus
	return s, nil
}

// Start creates the upload and storage directories.
func (s *Service) Start(context.Context) error {
	for _, dir := range []string{s.files.Path, filepath.Join(s.cfg.Dir, "sha256")} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("media: create %s: %w", dir, err)
		}
	}
	return nil
}

// Stop has nothing to release.
func (s *Service) Stop(context.Context) error { return nil }

// Routes mounts the tus endpoints and the lookup by hash on r.Public, the
// group at Deps.BasePath, which must already require an agent's access
// token:
//
//	OPTIONS /           tus discovery: Tus-Version, Tus-Max-Size
//	POST    /           create an upload (Upload-Length, Upload-Metadata)
//	HEAD    /:id        the upload's offset, to resume
//	PATCH   /:id        append bytes at Upload-Offset
//	DELETE  /:id        abandon an upload
//	GET     /by-hash/:sha256  whether media are stored
func (s *Service) Routes(r httpserver.Router) {
	g := r.Public
	for _, root := range []string{"", "/"} {
		g.OPTIONS(root, s.serve(s.tus.PostFile)) // the tus middleware answers OPTIONS itself
		g.POST(root, s.serve(s.tus.PostFile))
	}
	g.HEAD("/:id", s.owned(s.serve(s.tus.HeadFile)))
	g.PATCH("/:id", s.owned(s.completeOr(s.serve(s.tus.PatchFile))))
	g.DELETE("/:id", s.owned(s.serve(s.tus.DelFile)))
	g.GET("/by-hash/:sha256", s.byHash)
}

type agentKey struct{}

// uploadKey holds, in the echo context, the upload info owned loaded.
const uploadKey = "media.upload"

func agentOf(ctx context.Context) string {
	id, _ := ctx.Value(agentKey{}).(string)
	return id
}

// serve hands the request to a tusd handler with the path reduced to the
// upload id (as tusd expects) and the agent in the context for the hooks.
func (s *Service) serve(h http.HandlerFunc) echo.HandlerFunc {
	tus := s.tus.Middleware(h)
	return func(c echo.Context) error {
		r := c.Request()
		r = r.WithContext(context.WithValue(r.Context(), agentKey{}, auth.ClaimsOf(c).Subject))
		u := *r.URL
		u.Path = "/" + c.Param("id")
		r.URL = &u
		tus.ServeHTTP(c.Response(), r)
		return nil
	}
}

// owned answers 404 for an upload that does not exist or that another
// agent created, so upload ids are never usable across agents.
func (s *Service) owned(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		if !uploadIDPattern.MatchString(id) {
			return s.writeTusError(c, handler.ErrNotFound)
		}
		info, err := s.info(c.Request().Context(), id)
		if err != nil {
			return s.writeTusError(c, err)
		}
		if info.MetaData[metaAgent] != auth.ClaimsOf(c).Subject {
			return s.writeTusError(c, handler.ErrNotFound)
		}
		c.Set(uploadKey, info)
		return next(c)
	}
}

// completeOr finishes an upload whose bytes have all arrived but which was
// not stored (the process stopped, or the database failed, during the
// final PATCH): a PATCH at the full offset stores it now. tusd alone would
// answer such a PATCH with success and store nothing.
func (s *Service) completeOr(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		info := c.Get(uploadKey).(handler.FileInfo)
		offset := c.Request().Header.Get("Upload-Offset")
		if info.SizeIsDeferred || info.Offset != info.Size || offset != strconv.FormatInt(info.Size, 10) {
			return next(c)
		}
		ctx := c.Request().Context()
		lock, err := s.locker.NewLock(info.ID)
		if err != nil {
			return s.writeTusError(c, fmt.Errorf("lock upload %s: %w", info.ID, err))
		}
		if err := lock.Lock(ctx, func() {}); err != nil {
			return s.writeTusError(c, fmt.Errorf("lock upload %s: %w", info.ID, err))
		}
		defer lock.Unlock()
		if err := s.complete(ctx, info.ID); err != nil {
			return s.writeTusError(c, err)
		}
		c.Response().Header().Set("Tus-Resumable", "1.0.0")
		c.Response().Header().Set("Upload-Offset", offset)
		return c.NoContent(http.StatusNoContent)
	}
}

func (s *Service) info(ctx context.Context, id string) (handler.FileInfo, error) {
	up, err := s.files.GetUpload(ctx, id)
	if err != nil {
		return handler.FileInfo{}, err
	}
	return up.GetInfo(ctx)
}

// writeTusError answers as tusd does: a tus status and a plain-text body.
// Errors that are not tus errors are logged and shown to the client
// without detail.
func (s *Service) writeTusError(c echo.Context, err error) error {
	tusErr, ok := err.(handler.Error)
	if !ok {
		s.logger.ErrorContext(c.Request().Context(), "media request failed", "method", c.Request().Method, "upload", c.Param("id"), "err", err)
		tusErr = handler.NewError("ERR_INTERNAL_SERVER_ERROR", "internal error", http.StatusInternalServerError)
	}
	h := c.Response().Header()
	h.Set("Tus-Resumable", "1.0.0")
	for k, v := range tusErr.HTTPResponse.Header {
		h.Set(k, v)
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(tusErr.HTTPResponse.StatusCode)
	}
	return c.String(tusErr.HTTPResponse.StatusCode, tusErr.HTTPResponse.Body)
}

// admit checks an upload before it is created: the announced hash and
// content type must be there and well formed. The size limit is tusd's
// own check (413) before this hook runs.
func (s *Service) admit(hook handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	agent := agentOf(hook.Context)
	if agent == "" {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, fmt.Errorf("media: upload created without an agent in its context")
	}
	info := hook.Upload
	var problems []string
	if info.Size == 0 {
		problems = append(problems, "Upload-Length must be at least 1")
	}
	sum, ct := info.MetaData[MetaSHA256], info.MetaData[MetaContentType]
	if !ValidHash(sum) {
		problems = append(problems, "Upload-Metadata must carry sha256: the 64 lowercase hex digits of the content's SHA-256")
	}
	if !slices.Contains(ContentTypes, ct) {
		problems = append(problems, "Upload-Metadata must carry content_type: one of "+strings.Join(ContentTypes, ", "))
	}
	if len(problems) > 0 {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_INVALID_METADATA", strings.Join(problems, "; "), http.StatusBadRequest)
	}
	// Keep only what the server relies on; the agent comes from the token.
	meta := handler.MetaData{MetaSHA256: sum, MetaContentType: ct, metaAgent: agent}
	return handler.HTTPResponse{}, handler.FileInfoChanges{MetaData: meta}, nil
}

// finish runs when the last byte of an upload has been written, before the
// final PATCH is answered: the answer is a success only once the media
// are stored.
func (s *Service) finish(hook handler.HookEvent) (handler.HTTPResponse, error) {
	return handler.HTTPResponse{}, s.complete(hook.Context, hook.Upload.ID)
}
