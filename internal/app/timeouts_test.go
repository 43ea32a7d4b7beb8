package app_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestTimeouts_StalledUploadsAreClosed: `tani up` applies the -http.*
// timeouts to every route, the agents' sync and the tus media uploads
// alike: a body that stalls is cut off and its connection closed, and a
// media upload keeps what arrived, to be resumed.
func TestTimeouts_StalledUploadsAreClosed(t *testing.T) {
	tani := apptest.MustStart(t, "-target=mobile-api", "-http.body-read-timeout=1s", "-http.read-header-timeout=1s")
	addr := strings.TrimPrefix(tani.URL, "http://")
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	resp, err := http.Post(tani.URL+"/mobile/v1/auth/login", "application/json",
		strings.NewReader(`{"username":"`+agent.Username+`","password":"`+agent.Password+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&pair)
	resp.Body.Close()
	auth := "Authorization: Bearer " + pair.AccessToken + "\r\n"

	// A media upload of 1000 bytes, created as the app does.
	req, _ := http.NewRequest(http.MethodPost, tani.URL+"/mobile/v1/media/", nil)
	req.Header.Set("Authorization", "Bearer "+pair.AccessToken)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "1000")
	req.Header.Set("Upload-Metadata", "sha256 "+base64.StdEncoding.EncodeToString([]byte(strings.Repeat("ab", 32)))+
		",content_type "+base64.StdEncoding.EncodeToString([]byte("image/jpeg")))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	upload := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || upload == "" {
		t.Fatalf("create upload = %d (Location %q), want 201", resp.StatusCode, upload)
	}
	uploadPath := upload[strings.Index(upload, "/mobile/v1/media/"):]

	for _, tt := range []struct{ name, req string }{
		{"Sync", "POST /mobile/v1/sync HTTP/1.1\r\nHost: tani\r\n" + auth + "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"},
		{"MediaChunk", "PATCH " + uploadPath + " HTTP/1.1\r\nHost: tani\r\n" + auth + "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n" +
			"Content-Type: application/offset+octet-stream\r\nContent-Length: 1000\r\n\r\nx"},
		{"LoginUnread", "POST /mobile/v1/auth/login HTTP/1.1\r\nHost: tani\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n{"},
		{"Headers", "POST /mobile/v1/sync HTTP/1.1\r\nHost: tani\r\nContent-Le"},
	} {
		t.Run("ErrStalled"+tt.name+"_Closed", func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprint(conn, tt.req)
			conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // the test's patience
			r := bufio.NewReader(conn)
			status, _ := r.ReadString('\n')
			if _, err := io.Copy(io.Discard, r); err != nil {
				t.Errorf("connection not closed by the server (answered %q): %v", strings.TrimSpace(status), err)
			}
			t.Logf("answered %q, then closed", strings.TrimSpace(status))
		})
	}

	t.Run("OK_MediaUploadResumesAfterTheCut", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodHead, upload, nil)
		req.Header.Set("Authorization", "Bearer "+pair.AccessToken)
		req.Header.Set("Tus-Resumable", "1.0.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || (resp.Header.Get("Upload-Offset") != "0" && resp.Header.Get("Upload-Offset") != "1") {
			t.Errorf("upload after the cut = %d at offset %q, want it kept for resuming", resp.StatusCode, resp.Header.Get("Upload-Offset"))
		}
	})
}
