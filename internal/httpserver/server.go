package httpserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tani-platform/tani/internal/validate"
)

// Config is the listener and the limits every request is held to.
//
// Timeouts. A connection may not hold the server by sending slowly: the
// headers must arrive within ReadHeaderTimeout; then the body is read
// under a deadline that moves as bytes arrive (see pacedBody): each read
// may wait at most BodyReadTimeout for data, and after a first
// BodyReadTimeout the body must have averaged at least BodyMinRate bytes
// a second. A flat cap on the whole request would cut a legitimate 5 MB
// sync or a media chunk crawling over 2G; a per-read timeout alone would
// let a client keep the connection forever with a byte now and then. A
// keep-alive connection waits at most IdleTimeout for its next request.
// Zero disables a limit.
type Config struct {
	Listen            string
	BodyLimit         string
	ShutdownTimeout   time.Duration
	ReadHeaderTimeout time.Duration
	BodyReadTimeout   time.Duration
	BodyMinRate       int // bytes per second
	IdleTimeout       time.Duration
}

// RegisterFlags registers the http.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "http.listen", "127.0.0.1:8080", "address the HTTP server listens on")
	fs.StringVar(&c.BodyLimit, "http.body-limit", "6M", "largest request body accepted (the mobile sync batch limit is 5 MB)")
	fs.DurationVar(&c.ShutdownTimeout, "http.shutdown-timeout", 20*time.Second, "how long in-flight requests may take to finish at shutdown")
	fs.DurationVar(&c.ReadHeaderTimeout, "http.read-header-timeout", 10*time.Second, "how long a client may take to send a request's headers; 0: no limit")
	fs.DurationVar(&c.BodyReadTimeout, "http.body-read-timeout", 30*time.Second, "longest wait for the next bytes of a request body, and the grace before -http.body-min-rate applies; 0: no limit")
	fs.IntVar(&c.BodyMinRate, "http.body-min-rate", 256, "slowest average a request body may arrive at, in bytes per second, once -http.body-read-timeout has passed; 0: no minimum")
	fs.DurationVar(&c.IdleTimeout, "http.idle-timeout", 2*time.Minute, "how long a kept-alive connection may wait for its next request; 0: no limit")
}

// Server is the process's one HTTP server. Modules mount their routes on
// Echo while the process starts; the server forwards requests to them only
// once Open has been called, so routes are never read while being added.
type Server struct {
	Echo *echo.Echo

	cfg      Config
	logger   *slog.Logger
	probes   *http.ServeMux
	listener net.Listener
	srv      *http.Server
	open     atomic.Bool      // routes are complete; forward to echo
	ready    atomic.Bool      // every module runs; /readyz answers 200 unless a check fails
	checks   []readinessCheck // fixed once open

	unlimited []string // path prefixes whose handlers bound bodies themselves; fixed once open
}

// New builds the server and its middleware. It does no I/O.
func New(cfg Config, logger *slog.Logger, reg *prometheus.Registry) *Server {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Validator = validate.New()
	e.HTTPErrorHandler = errorHandler(logger)
	e.Use(
		middleware.RequestID(),
		accessLog(logger),
		metrics(reg),
	)
	s := &Server{Echo: e, cfg: cfg, logger: logger, probes: http.NewServeMux()}
	e.Use(
		cleanURL,
		middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: cfg.BodyLimit, Skipper: s.exempt}),
		middleware.Recover(),
	)
	s.probes.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	s.probes.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		var failed []string
		for _, c := range s.checks {
			if err := c.check(); err != nil {
				failed = append(failed, c.name+": "+err.Error())
			}
		}
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: "+strings.Join(failed, "; "))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s.probes.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return s
}

// ServeHTTP answers the probes itself and everything else through echo once
// the routes are open; before that, 503 in the common error shape.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		s.probes.ServeHTTP(w, r)
		return
	}
	if !s.open.Load() {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, `{"error":{"code":"unavailable","message":"starting up"}}`)
		return
	}
	if s.cfg.BodyReadTimeout > 0 && r.Body != nil && r.Body != http.NoBody {
		// On a copy: net/http looks at its own request's body after the
		// handler to decide whether the connection can be reused.
		paced := new(http.Request)
		*paced = *r
		paced.Body = newPacedBody(w, r.Body, s.cfg.BodyReadTimeout, s.cfg.BodyMinRate)
		r = paced
	}
	s.Echo.ServeHTTP(w, r)
}

// readinessCheck is a module's own say in /readyz.
type readinessCheck struct {
	name  string
	check func() error
}

// AddReadinessCheck makes /readyz answer 503 with "name: reason" whenever
// check returns an error, for a module that runs but must not be sent
// traffic (the journal after it detected a fork). check is called on every
// probe, so it must be cheap and safe for concurrent use. Like routes, it
// must be added before Open.
func (s *Server) AddReadinessCheck(name string, check func() error) {
	s.checks = append(s.checks, readinessCheck{name: name, check: check})
}

// ExemptFromBodyLimit lets requests under prefix through without the
// -http.body-limit check, for handlers that bound bodies themselves (media
// uploads). Like routes, it must be called before Open.
func (s *Server) ExemptFromBodyLimit(prefix string) {
	s.unlimited = append(s.unlimited, prefix)
}

func (s *Server) exempt(c echo.Context) bool {
	for _, p := range s.unlimited {
		if strings.HasPrefix(c.Request().URL.Path, p) {
			return true
		}
	}
	return false
}

// Listen binds the address so probes answer while the other modules start.
func (s *Server) Listen(ctx context.Context) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	s.listener = l
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	if s.cfg.ReadHeaderTimeout == 0 {
		// net/http would fall back on ReadTimeout, which bounds the
		// whole request; bodies have their own deadline (pacedBody).
		s.srv.ReadHeaderTimeout = -1
	}
	return nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Serve serves until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.listener)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Open starts forwarding requests to the mounted routes.
func (s *Server) Open() { s.open.Store(true) }

// SetReady sets what /readyz answers.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Shutdown stops accepting connections and waits for in-flight requests.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

func accessLog(logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err) // write the error now so the log has the real status
			}
			req, res := c.Request(), c.Response()
			logger.LogAttrs(req.Context(), slog.LevelInfo, "http request",
				slog.String("method", req.Method),
				slog.String("path", req.URL.Path),
				slog.String("route", c.Path()),
				slog.Int("status", res.Status),
				slog.Int64("bytes", res.Size),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", c.RealIP()),
				slog.String("request_id", res.Header().Get(echo.HeaderXRequestID)),
			)
			return nil
		}
	}
}

func metrics(reg *prometheus.Registry) echo.MiddlewareFunc {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tani_http_requests_total",
		Help: "HTTP requests answered, by route and status code.",
	}, []string{"method", "route", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tani_http_request_duration_seconds",
		Help:    "Time to answer HTTP requests, by route.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method", "route"})
	reg.MustRegister(requests, duration)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			method := c.Request().Method
			requests.WithLabelValues(method, route, strconv.Itoa(c.Response().Status)).Inc()
			duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
			return nil
		}
	}
}
