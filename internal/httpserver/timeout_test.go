package httpserver_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/httpserver"
)

// mustServe runs a real server (listener, timeouts) with a route that
// reads a JSON body and one that answers without reading it.
func mustServe(tb testing.TB, cfg httpserver.Config) string {
	tb.Helper()
	cfg.Listen, cfg.BodyLimit = "127.0.0.1:0", "1M"
	s := httpserver.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	s.Echo.POST("/echo", func(c echo.Context) error {
		var in map[string]any
		if err := httpserver.DecodeJSON(c, &in); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, in)
	})
	s.Echo.POST("/refuse", func(c echo.Context) error { return c.NoContent(http.StatusUnauthorized) })
	s.Open()
	if err := s.Listen(context.Background()); err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return s.Addr()
}

// closedByServer reads what the server sends on conn until it closes the
// connection, and reports the status line it answered, if any. It fails
// the test if the server has not closed it after wait (the client's own
// deadline, far above the server's timeouts).
func closedByServer(t testing.TB, conn net.Conn, wait time.Duration) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(wait))
	r := bufio.NewReader(conn)
	status, _ := r.ReadString('\n')
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("connection still open after %s (answered %q)", wait, strings.TrimSpace(status))
	}
	return strings.TrimSpace(status)
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// stalledBody starts a request announcing a body of 1000 bytes, sends one
// byte of it, and stops.
func stalledBody(t testing.TB, addr, path string) net.Conn {
	t.Helper()
	conn := dial(t, addr)
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: tani\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", path); err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestTimeouts(t *testing.T) {
	cfg := httpserver.Config{ReadHeaderTimeout: time.Second, BodyReadTimeout: time.Second, BodyMinRate: 1000, IdleTimeout: time.Second}
	addr := mustServe(t, cfg)
	const wait = 30 * time.Second // the test's patience, not the server's timeout

	t.Run("ErrStalledBodies_ClosedWhileNormalRequestsSucceed", func(t *testing.T) {
		const n = 50
		conns := make([]net.Conn, n)
		for i := range conns {
			conns[i] = stalledBody(t, addr, "/echo")
		}
		resp, err := http.Post("http://"+addr+"/echo", "application/json", strings.NewReader(`{"ok":true}`))
		if err != nil {
			t.Fatalf("a normal request beside %d stalled ones: %v", n, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok":true`) {
			t.Errorf("normal request = %d %s, want 200", resp.StatusCode, body)
		}
		var wg sync.WaitGroup
		statuses := make([]string, n)
		for i, c := range conns {
			wg.Go(func() { statuses[i] = closedByServer(t, c, wait) })
		}
		wg.Wait()
		for i, st := range statuses {
			if !strings.Contains(st, "408") {
				t.Errorf("stalled connection %d answered %q, want 408 before closing", i, st)
				break
			}
		}
	})

	t.Run("ErrStalledBodyNeverRead_Closed", func(t *testing.T) {
		// The handler answers without reading; the server's discard of
		// the rest of the body is bounded too.
		if st := closedByServer(t, stalledBody(t, addr, "/refuse"), wait); !strings.Contains(st, "401") {
			t.Errorf("answered %q, want the handler's 401", st)
		}
	})

	t.Run("ErrStalledHeaders_Closed", func(t *testing.T) {
		conn := dial(t, addr)
		fmt.Fprint(conn, "POST /echo HTTP/1.1\r\nHost: ta")
		closedByServer(t, conn, wait)
	})

	t.Run("ErrTrickledBody_ClosedBelowMinimumRate", func(t *testing.T) {
		// A byte every 50 ms never waits a whole timeout, but averages
		// 20 bytes a second against a minimum of 1000.
		conn := dial(t, addr)
		fmt.Fprint(conn, "POST /echo HTTP/1.1\r\nHost: tani\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
		stop := make(chan struct{})
		sent := make(chan int)
		go func() {
			n := 0
			defer func() { sent <- n }()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
				n++
			}
		}()
		st := closedByServer(t, conn, wait)
		close(stop)
		if n := <-sent; n < 2 {
			t.Errorf("sent %d bytes before being cut off; the test did not trickle", n)
		}
		if !strings.Contains(st, "408") {
			t.Errorf("answered %q, want 408", st)
		}
	})

	t.Run("OK_SlowButSteadyBodyCompletes", func(t *testing.T) {
		// 20 KB at about 10 KB/s: longer than the timeout in all, never
		// waiting long, well above the minimum rate.
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(`{"data":"`))
			for range 20 {
				time.Sleep(100 * time.Millisecond)
				pw.Write([]byte(strings.Repeat("x", 1000)))
			}
			pw.Write([]byte(`"}`))
			pw.Close()
		}()
		start := time.Now()
		resp, err := http.Post("http://"+addr+"/echo", "application/json", pr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("slow steady body = %d, want 200", resp.StatusCode)
		}
		if took := time.Since(start); took < cfg.BodyReadTimeout {
			t.Logf("body took %s, less than the timeout: the test did not exercise a long body", took)
		}
	})

	t.Run("ErrIdleKeepAlive_Closed", func(t *testing.T) {
		conn := dial(t, addr)
		fmt.Fprint(conn, "POST /echo HTTP/1.1\r\nHost: tani\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
		if st := closedByServer(t, conn, wait); !strings.Contains(st, "200") {
			t.Errorf("answered %q, want 200, then the connection closed when idle", st)
		}
	})
}

// BenchmarkStalledBodies opens 500 connections that each send one byte of
// a body and stall, beside one normal request, and measures how long the
// server takes to close them all with a 1 s body timeout (the issue's
// figure: 500 slow-body connections used to stay open indefinitely).
func BenchmarkStalledBodies(b *testing.B) {
	const n = 500
	addr := mustServe(b, httpserver.Config{ReadHeaderTimeout: time.Second, BodyReadTimeout: time.Second, BodyMinRate: 256, IdleTimeout: time.Second})
	var worst time.Duration
	for b.Loop() {
		start := time.Now()
		conns := make([]net.Conn, n)
		for i := range conns {
			conns[i] = stalledBody(b, addr, "/echo")
		}
		resp, err := http.Post("http://"+addr+"/echo", "application/json", strings.NewReader(`{}`))
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("normal request beside %d stalled ones: %v %v", n, err, resp)
		}
		resp.Body.Close()
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { closedByServer(b, c, 60*time.Second) })
		}
		wg.Wait()
		worst = max(worst, time.Since(start))
		for _, c := range conns {
			c.Close()
		}
	}
	b.ReportMetric(n, "conns/op")
	b.ReportMetric(worst.Seconds(), "s-until-all-closed")
}
