package client

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Media uploads speak tus 1.0 (https://tus.io/protocols/resumable-upload):
//
//  1. GET  /mobile/v1/media/by-hash/<sha256>: 200 means already stored, stop.
//  2. POST /mobile/v1/media/ with Upload-Length and Upload-Metadata
//     (sha256, content_type, base64 values): 201 and the upload's Location.
//  3. PATCH Location with Upload-Offset and a chunk of the bytes
//     (Content-Type application/offset+octet-stream): 204 and the new
//     Upload-Offset. The PATCH that completes the upload is answered only
//     once the server has verified the hash and stored the media.
//  4. After a failure, HEAD Location: its Upload-Offset is where to go on
//     (the server keeps every byte it received). A HEAD answered 404 means
//     the upload is gone: stored if by-hash says so, refused otherwise.
//
// Every request carries the access token and Tus-Resumable: 1.0.0.

const (
	defaultMediaChunk = 256 << 10 // about 15 s over EDGE: small enough to lose little
	mediaAttempts     = 8         // consecutive failures before giving up
)

// SetMediaChunkSize sets how many bytes one PATCH carries.
func (c *Client) SetMediaChunkSize(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mediaChunk = n
}

// UploadMedia uploads size bytes of r, of the given content type
// (image/jpeg, image/png or application/pdf), resuming from the server's
// offset after failures, and returns their SHA-256: the hash records
// reference the media by. Content the server already has is not sent.
func (c *Client) UploadMedia(ctx context.Context, r io.ReaderAt, size int64, contentType string) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return "", fmt.Errorf("hash media: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if stored, err := c.MediaStored(ctx, sum); err != nil || stored {
		return sum, err
	}
	loc, err := c.createUpload(ctx, sum, size, contentType)
	if err != nil {
		return "", err
	}
	var offset int64
	resync := false
	for failures := 0; ; {
		var err error
		if resync {
			offset, err = c.uploadOffset(ctx, loc)
		}
		if err == nil {
			offset, err = c.patchUpload(ctx, loc, r, offset, size)
		}
		var apiErr *Error
		switch {
		case err == nil && offset == size:
			return sum, nil
		case err == nil:
			failures, resync = 0, false
			continue
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
			// The upload is gone: stored by a PATCH whose answer was lost,
			// or refused.
			if stored, serr := c.MediaStored(ctx, sum); serr == nil && stored {
				return sum, nil
			}
			return "", fmt.Errorf("upload media %s: %w", sum, err)
		case !retryable(err) || failures+1 >= mediaAttempts:
			return "", fmt.Errorf("upload media %s: %w", sum, err)
		}
		failures++
		resync = true
		select {
		case <-time.After(time.Duration(failures*failures) * 100 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// MediaStored reports whether the server has media with this SHA-256.
func (c *Client) MediaStored(ctx context.Context, sum string) (bool, error) {
	err := c.authed(ctx, http.MethodGet, "/mobile/v1/media/by-hash/"+sum, nil, nil)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

func (c *Client) createUpload(ctx context.Context, sum string, size int64, contentType string) (string, error) {
	meta := "sha256 " + base64.StdEncoding.EncodeToString([]byte(sum)) +
		",content_type " + base64.StdEncoding.EncodeToString([]byte(contentType))
	resp, err := c.tus(ctx, http.MethodPost, c.base+"/mobile/v1/media/", map[string]string{
		"Upload-Length": strconv.FormatInt(size, 10), "Upload-Metadata": meta,
	}, nil, http.StatusCreated)
	if err != nil {
		return "", fmt.Errorf("create upload: %w", err)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Path == "" {
		return "", fmt.Errorf("create upload: bad Location %q", resp.Header.Get("Location"))
	}
	return resp.Request.URL.ResolveReference(loc).String(), nil
}

// uploadOffset asks how many bytes of the upload the server has.
func (c *Client) uploadOffset(ctx context.Context, loc string) (int64, error) {
	resp, err := c.tus(ctx, http.MethodHead, loc, nil, nil, http.StatusOK)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

// patchUpload sends one chunk from offset and returns the server's new
// offset. At offset == size it sends an empty chunk, which completes an
// upload whose bytes all arrived but whose last answer was lost.
func (c *Client) patchUpload(ctx context.Context, loc string, r io.ReaderAt, offset, size int64) (int64, error) {
	c.mu.Lock()
	chunk := c.mediaChunk
	c.mu.Unlock()
	if chunk <= 0 {
		chunk = defaultMediaChunk
	}
	n := min(chunk, size-offset)
	resp, err := c.tus(ctx, http.MethodPatch, loc, map[string]string{
		"Upload-Offset": strconv.FormatInt(offset, 10), "Content-Type": "application/offset+octet-stream",
	}, func() io.Reader { return io.NewSectionReader(r, offset, n) }, http.StatusNoContent)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

// tus sends one tus request with the access token (refreshed once on 401)
// and returns the response if its status is want, else an *Error. body
// makes the request body afresh for each try.
func (c *Client) tus(ctx context.Context, method, loc string, header map[string]string, body func() io.Reader, want int) (*http.Response, error) {
	for try := 0; ; try++ {
		var rd io.Reader
		if body != nil {
			rd = body()
		}
		req, err := http.NewRequestWithContext(ctx, method, loc, rd)
		if err != nil {
			return nil, err
		}
		if sr, ok := rd.(*io.SectionReader); ok {
			req.ContentLength = sr.Size() // also for an empty chunk: Content-Length 0, not chunked
		}
		req.Header.Set("Tus-Resumable", "1.0.0")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		c.mu.Lock()
		req.Header.Set("Authorization", "Bearer "+c.access)
		c.mu.Unlock()
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == want {
			return resp, nil
		}
		if resp.StatusCode == http.StatusUnauthorized && try == 0 && c.Refresh(ctx) == nil {
			continue
		}
		// The token check answers in the API's JSON error shape, tus
		// itself in plain text "ERR_CODE: message".
		var e struct {
			Error Error `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
			e.Error.Status = resp.StatusCode
			return nil, &e.Error
		}
		code, msg, ok := strings.Cut(strings.TrimSpace(string(raw)), ": ")
		if !ok {
			code, msg = "http", strings.TrimSpace(string(raw))
		}
		return nil, &Error{Status: resp.StatusCode, Code: code, Message: msg}
	}
}

// retryable tells failures worth resuming after (the network, the server
// busy or failing, an offset that moved) from refusals.
func retryable(err error) bool {
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	switch apiErr.Status {
	case http.StatusConflict, http.StatusLocked, http.StatusTooManyRequests:
		return true
	}
	return apiErr.Status >= 500
}
