package media

import (
	"flag"
	"path/filepath"
	"time"
)

// DefaultMaxSize is the largest upload accepted unless configured: a phone
// photo or a scanned document, never a video.
const DefaultMaxSize = 20 << 20

// Config is where media are kept and how large one may be.
type Config struct {
	// MaxSize is the largest upload, in bytes, announced to clients as
	// Tus-Max-Size and enforced when an upload is created.
	MaxSize int64
	// Dir holds uploads in progress and stored media; empty means
	// <data-dir>/media.
	Dir string
	// UploadTTL is how long an unfinished upload may sit untouched before
	// it is removed as abandoned.
	UploadTTL time.Duration
}

// DefaultUploadTTL keeps an unfinished upload for two weeks: an agent may
// be out of coverage that long and still resume.
const DefaultUploadTTL = 14 * 24 * time.Hour

// RegisterFlags registers the flags under prefix ("media.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.Int64Var(&c.MaxSize, prefix+"max-size", DefaultMaxSize, "largest media upload in bytes, announced to clients before they upload")
	fs.StringVar(&c.Dir, prefix+"dir", "", "directory for uploads in progress and stored media; default <data-dir>/media")
	fs.DurationVar(&c.UploadTTL, prefix+"upload-ttl", DefaultUploadTTL, "unfinished uploads untouched this long are removed as abandoned")
}

// InDataDir returns the configuration with an empty Dir resolved under
// dataDir.
func (c Config) InDataDir(dataDir string) Config {
	if c.Dir == "" {
		c.Dir = filepath.Join(dataDir, "media")
	}
	if c.UploadTTL == 0 {
		c.UploadTTL = DefaultUploadTTL
	}
	return c
}
