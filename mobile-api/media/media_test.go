package media_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

const maxSize = 1 << 20 // -media.max-size in these tests

// jpeg returns n bytes that sniff as a JPEG and are unique.
func jpeg(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	copy(b, "\xff\xd8\xff\xe0")
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// server is a running process with its media directory.
type server struct {
	*apptest.Running
	dir string
}

func mustStart(t *testing.T) server {
	t.Helper()
	dir := t.TempDir()
	return server{apptest.MustStart(t, "-media.dir="+dir, "-media.max-size="+strconv.Itoa(maxSize)), dir}
}

// token logs the agent in again for hand-made requests.
func token(t *testing.T, base string, a *clienttest.Agent) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": a.Username, "password": a.Password})
	resp, err := http.Post(base+"/mobile/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&pair); err != nil || pair.AccessToken == "" {
		t.Fatalf("login: %v", err)
	}
	return pair.AccessToken
}

// tus sends one hand-made tus request and returns the response, its body read.
func tus(t *testing.T, method, url, token string, header map[string]string, body []byte) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

func metadata(kv ...string) string {
	var parts []string
	for i := 0; i < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

// create starts an upload and returns its URL.
func create(t *testing.T, s server, tok string, size int, meta string) string {
	t.Helper()
	resp, body := tus(t, http.MethodPost, s.URL+"/mobile/v1/media/", tok, map[string]string{"Upload-Length": strconv.Itoa(size), "Upload-Metadata": meta}, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: status = %d (%s), want 201", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

func patch(t *testing.T, url, tok string, offset int, chunk []byte) (*http.Response, string) {
	t.Helper()
	return tus(t, http.MethodPatch, url, tok, map[string]string{"Upload-Offset": strconv.Itoa(offset), "Content-Type": "application/offset+octet-stream"}, chunk)
}

// stored counts mobile.media rows and files for a hash.
func stored(t *testing.T, s server, hash string) (rows, files int) {
	t.Helper()
	if err := s.DB.QueryRow(context.Background(), `SELECT count(*) FROM mobile.media WHERE sha256 = $1`, hash).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "sha256", hash[:2], hash)); err == nil {
		files = 1
	}
	return rows, files
}

// inProgress counts uploads the server still holds.
func inProgress(t *testing.T, s server) int {
	t.Helper()
	infos, err := filepath.Glob(filepath.Join(s.dir, "uploads", "*.info"))
	if err != nil {
		t.Fatal(err)
	}
	return len(infos)
}

// cutSecondPatch drops the connection halfway through the body of the
// second PATCH, and logs every tus exchange as "METHOD sent-offset answered-offset".
type cutSecondPatch struct {
	mu      sync.Mutex
	patches int
	log     []exchange
}

type exchange struct {
	method       string
	sent, answer int64
}

var errCut = errors.New("connection lost (test)")

type cutBody struct {
	r    io.Reader
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errCut
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
}

func (b *cutBody) Close() error { return nil }

func (c *cutSecondPatch) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if req.Method == http.MethodPatch {
		c.patches++
		if c.patches == 2 {
			req = req.Clone(req.Context())
			req.Body = &cutBody{r: req.Body, left: req.ContentLength / 2}
		}
	}
	c.mu.Unlock()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && (req.Method == http.MethodPatch || req.Method == http.MethodHead) {
		sent, _ := strconv.ParseInt(req.Header.Get("Upload-Offset"), 10, 64)
		answer, _ := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
		c.mu.Lock()
		c.log = append(c.log, exchange{req.Method, sent, answer})
		c.mu.Unlock()
	}
	return resp, err
}

func TestUpload(t *testing.T) {
	s := mustStart(t)
	agent := clienttest.MustAgent(t, s.URL, s.OperatorToken, "Central Java")
	tok := token(t, s.URL, agent)
	ctx := context.Background()

	t.Run("OK_ResumesFromServerOffsetAfterLostConnection", func(t *testing.T) {
		const chunk = 64 << 10
		content := jpeg(t, 5*chunk+123)
		cut := &cutSecondPatch{}
		c := client.New(s.URL, &http.Client{Transport: cut})
		if err := c.Login(ctx, agent.Username, agent.Password); err != nil {
			t.Fatal(err)
		}
		c.SetMediaChunkSize(chunk)
		got, err := c.UploadMedia(ctx, bytes.NewReader(content), int64(len(content)), "image/jpeg")
		if err != nil {
			t.Fatalf("UploadMedia: %v", err)
		}
		if want := sum(content); got != want {
			t.Errorf("hash = %s, want %s", got, want)
		}
		var resumedAt int64 = -1
		for i, e := range cut.log {
			if e.method == http.MethodHead && i+1 < len(cut.log) {
				resumedAt = e.answer
				if next := cut.log[i+1]; next.method != http.MethodPatch || next.sent != e.answer {
					t.Errorf("after HEAD answered offset %d, next request = %+v, want a PATCH from %d", e.answer, next, e.answer)
				}
			}
		}
		// The server keeps the bytes of the cut PATCH it received, so the
		// upload resumes inside the second chunk, not at its start.
		if resumedAt <= chunk || resumedAt >= 2*chunk {
			t.Errorf("resumed at offset %d (exchanges %+v), want inside the cut chunk (%d, %d)", resumedAt, cut.log, chunk, 2*chunk)
		}
		file, err := os.ReadFile(filepath.Join(s.dir, "sha256", got[:2], got))
		if err != nil {
			t.Fatalf("stored file: %v", err)
		}
		if !bytes.Equal(file, content) {
			t.Errorf("stored %d bytes differ from the %d uploaded", len(file), len(content))
		}
		var size int64
		var ct, uploader string
		if err := s.DB.QueryRow(ctx, `SELECT size, content_type, agent_id::text FROM mobile.media WHERE sha256 = $1`, got).Scan(&size, &ct, &uploader); err != nil {
			t.Fatalf("mobile.media row: %v", err)
		}
		if size != int64(len(content)) || ct != "image/jpeg" || uploader != agent.ID {
			t.Errorf("row = (%d, %s, %s), want (%d, image/jpeg, %s)", size, ct, uploader, len(content), agent.ID)
		}
		if n := inProgress(t, s); n != 0 {
			t.Errorf("%d uploads left in progress, want 0", n)
		}
	})

	t.Run("OK_SameContentTwiceStoredOnce", func(t *testing.T) {
		content := jpeg(t, 10_000)
		hash := sum(content)
		for i := range 2 {
			url := create(t, s, tok, len(content), metadata("sha256", hash, "content_type", "image/jpeg"))
			if resp, body := patch(t, url, tok, 0, content); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("upload %d: status = %d (%s), want 204", i+1, resp.StatusCode, body)
			}
		}
		if rows, files := stored(t, s, hash); rows != 1 || files != 1 {
			t.Errorf("stored in %d rows and %d files, want 1 and 1", rows, files)
		}
		if n := inProgress(t, s); n != 0 {
			t.Errorf("%d uploads left in progress, want 0", n)
		}
	})

	t.Run("OK_FinalPatchRepeatedAfterStoreFailure", func(t *testing.T) {
		content := jpeg(t, 20_000)
		hash := sum(content)
		// Make recording fail as a database outage would.
		if _, err := s.DB.Exec(ctx, `ALTER TABLE mobile.media ADD CONSTRAINT test_outage CHECK (false) NOT VALID`); err != nil {
			t.Fatal(err)
		}
		url := create(t, s, tok, len(content), metadata("sha256", hash, "content_type", "image/jpeg"))
		resp, body := patch(t, url, tok, 0, content)
		if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "ERR_MEDIA_NOT_STORED") {
			t.Errorf("final PATCH during outage: %d %q, want 500 ERR_MEDIA_NOT_STORED", resp.StatusCode, body)
		}
		if rows, _ := stored(t, s, hash); rows != 0 {
			t.Errorf("%d rows during the outage, want 0", rows)
		}
		if _, err := s.DB.Exec(ctx, `ALTER TABLE mobile.media DROP CONSTRAINT test_outage`); err != nil {
			t.Fatal(err)
		}
		resp, _ = tus(t, http.MethodHead, url, tok, nil, nil)
		if got := resp.Header.Get("Upload-Offset"); resp.StatusCode != http.StatusOK || got != strconv.Itoa(len(content)) {
			t.Fatalf("HEAD after outage: %d offset %q, want 200 at %d (upload kept)", resp.StatusCode, got, len(content))
		}
		if resp, body := patch(t, url, tok, len(content), nil); resp.StatusCode != http.StatusNoContent {
			t.Errorf("repeated final PATCH: %d %q, want 204", resp.StatusCode, body)
		}
		if rows, files := stored(t, s, hash); rows != 1 || files != 1 {
			t.Errorf("stored in %d rows and %d files, want 1 and 1", rows, files)
		}
		if resp, _ := tus(t, http.MethodHead, url, tok, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD once stored: status = %d, want 404", resp.StatusCode)
		}
	})

	t.Run("ErrChecksumMismatch_UploadDeletedNothingStored", func(t *testing.T) {
		content, announced := jpeg(t, 10_000), jpeg(t, 10_000)
		url := create(t, s, tok, len(content), metadata("sha256", sum(announced), "content_type", "image/jpeg"))
		resp, body := patch(t, url, tok, 0, content)
		if resp.StatusCode != 460 || !strings.Contains(body, "ERR_CHECKSUM_MISMATCH") {
			t.Errorf("final PATCH: %d %q, want 460 ERR_CHECKSUM_MISMATCH", resp.StatusCode, body)
		}
		for _, h := range []string{sum(content), sum(announced)} {
			if rows, files := stored(t, s, h); rows != 0 || files != 0 {
				t.Errorf("%s stored in %d rows and %d files, want none", h, rows, files)
			}
		}
		if resp, _ := tus(t, http.MethodHead, url, tok, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD after mismatch: status = %d, want 404 (upload deleted)", resp.StatusCode)
		}
	})

	t.Run("ErrContentTypeMismatch_NothingStored", func(t *testing.T) {
		content := jpeg(t, 2_000)
		url := create(t, s, tok, len(content), metadata("sha256", sum(content), "content_type", "application/pdf"))
		resp, body := patch(t, url, tok, 0, content)
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("final PATCH: %d %q, want 415", resp.StatusCode, body)
		}
		if rows, files := stored(t, s, sum(content)); rows != 0 || files != 0 {
			t.Errorf("stored in %d rows and %d files, want none", rows, files)
		}
	})

	t.Run("ErrOversize_RefusedBeforeUpload", func(t *testing.T) {
		resp, _ := tus(t, http.MethodOptions, s.URL+"/mobile/v1/media/", tok, nil, nil)
		if got := resp.Header.Get("Tus-Max-Size"); got != strconv.Itoa(maxSize) {
			t.Errorf("OPTIONS Tus-Max-Size = %q, want %d", got, maxSize)
		}
		before := inProgress(t, s)
		content := jpeg(t, 16)
		resp, body := tus(t, http.MethodPost, s.URL+"/mobile/v1/media/", tok, map[string]string{
			"Upload-Length": strconv.Itoa(maxSize + 1), "Upload-Metadata": metadata("sha256", sum(content), "content_type", "image/jpeg")}, nil)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("create: %d %q, want 413", resp.StatusCode, body)
		}
		if after := inProgress(t, s); after != before {
			t.Errorf("uploads in progress went from %d to %d, want no new one", before, after)
		}
	})

	t.Run("ErrMetadata_Refused", func(t *testing.T) {
		content := jpeg(t, 100)
		hash := sum(content)
		tests := []struct {
			name, meta, length, want string
		}{
			{"MissingSHA256", metadata("content_type", "image/jpeg"), "100", "sha256"},
			{"UppercaseSHA256", metadata("sha256", strings.ToUpper(hash), "content_type", "image/jpeg"), "100", "sha256"},
			{"ShortSHA256", metadata("sha256", hash[:63], "content_type", "image/jpeg"), "100", "sha256"},
			{"MissingContentType", metadata("sha256", hash), "100", "content_type"},
			{"UnsupportedContentType", metadata("sha256", hash, "content_type", "video/mp4"), "100", "content_type"},
			{"NoMetadata", "", "100", "sha256"},
			{"EmptyUpload", metadata("sha256", hash, "content_type", "image/jpeg"), "0", "Upload-Length"},
		}
		before := inProgress(t, s)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := tus(t, http.MethodPost, s.URL+"/mobile/v1/media/", tok, map[string]string{"Upload-Length": tt.length, "Upload-Metadata": tt.meta}, nil)
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tt.want) {
					t.Errorf("create: %d %q, want 400 naming %s", resp.StatusCode, body, tt.want)
				}
			})
		}
		if after := inProgress(t, s); after != before {
			t.Errorf("uploads in progress went from %d to %d, want no new one", before, after)
		}
	})

	t.Run("ErrUnauthenticated", func(t *testing.T) {
		content := jpeg(t, 100)
		for _, tt := range []struct{ method, path string }{
			{http.MethodPost, "/mobile/v1/media/"},
			{http.MethodOptions, "/mobile/v1/media/"},
			{http.MethodGet, "/mobile/v1/media/by-hash/" + sum(content)},
		} {
			resp, _ := tus(t, tt.method, s.URL+tt.path, "", map[string]string{"Upload-Length": "100", "Upload-Metadata": metadata("sha256", sum(content), "content_type", "image/jpeg")}, nil)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s without token: status = %d, want 401", tt.method, tt.path, resp.StatusCode)
			}
		}
	})

	t.Run("ErrNotFound_OtherAgentsUpload", func(t *testing.T) {
		content := jpeg(t, 1_000)
		url := create(t, s, tok, len(content), metadata("sha256", sum(content), "content_type", "image/jpeg"))
		other := clienttest.MustAgent(t, s.URL, s.OperatorToken, "Central Java")
		otherTok := token(t, s.URL, other)
		if resp, _ := tus(t, http.MethodHead, url, otherTok, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD by another agent: status = %d, want 404", resp.StatusCode)
		}
		if resp, _ := patch(t, url, otherTok, 0, content); resp.StatusCode != http.StatusNotFound {
			t.Errorf("PATCH by another agent: status = %d, want 404", resp.StatusCode)
		}
		if resp, _ := tus(t, http.MethodHead, url, tok, nil, nil); resp.StatusCode != http.StatusOK || resp.Header.Get("Upload-Offset") != "0" {
			t.Errorf("HEAD by its agent: status = %d offset %q, want 200 at 0", resp.StatusCode, resp.Header.Get("Upload-Offset"))
		}
	})

	t.Run("ByHash", func(t *testing.T) {
		content := jpeg(t, 3_000)
		hash, err := agent.UploadMedia(ctx, bytes.NewReader(content), int64(len(content)), "image/jpeg")
		if err != nil {
			t.Fatal(err)
		}
		t.Run("OK", func(t *testing.T) {
			resp, body := tus(t, http.MethodGet, s.URL+"/mobile/v1/media/by-hash/"+hash, tok, nil, nil)
			var m struct {
				SHA256      string `json:"sha256"`
				Size        int64  `json:"size"`
				ContentType string `json:"content_type"`
			}
			if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &m) != nil {
				t.Fatalf("status = %d (%s), want 200", resp.StatusCode, body)
			}
			if m.SHA256 != hash || m.Size != int64(len(content)) || m.ContentType != "image/jpeg" {
				t.Errorf("got %+v, want %s, %d bytes, image/jpeg", m, hash, len(content))
			}
		})
		t.Run("ErrNotFound", func(t *testing.T) {
			if stored, err := agent.MediaStored(ctx, sum(jpeg(t, 10))); err != nil || stored {
				t.Errorf("MediaStored = %v, %v; want false, nil", stored, err)
			}
		})
		t.Run("ErrInvalidHash", func(t *testing.T) {
			resp, body := tus(t, http.MethodGet, s.URL+"/mobile/v1/media/by-hash/"+strings.ToUpper(hash), tok, nil, nil)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"field":"sha256"`) {
				t.Errorf("got %d %s, want 400 naming sha256", resp.StatusCode, body)
			}
		})
	})
}
