package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/apperr"
)

// Handler processes one message. It returns nil only once the message's
// effect is committed; the runner then acks. An apperr Invalid or Conflict
// error means the message can never succeed (poison); any other error is
// transient and the message is redelivered with backoff.
type Handler func(ctx context.Context, msg jetstream.Msg) error

// ConsumerConfig describes one durable pull consumer.
type ConsumerConfig struct {
	Stream         string
	Durable        string
	FilterSubjects []string
	MaxDeliver     int           // deliveries before a transiently failing message is dead-lettered; default 10; negative: retry forever
	AckWait        time.Duration // default 30s
	HandleTimeout  time.Duration // per message; default 20s
	Buffer         int           // messages prefetched; default 256
	MaxBatch       int           // records per BatchHandler call (RunBatch): a batch takes messages until it holds this many (a bundle is not split); default 256
}

func (c *ConsumerConfig) defaults() {
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.HandleTimeout == 0 {
		c.HandleTimeout = 20 * time.Second
	}
	if c.Buffer == 0 {
		c.Buffer = 256
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 256
	}
}

// Metrics counts what consumers did with messages.
type Metrics struct {
	messages *prometheus.CounterVec
	duration *prometheus.HistogramVec
	batch    *prometheus.HistogramVec
	lag      *lagCollector
}

// NewMetrics registers the consumer metrics once per process.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tani_consumer_messages_total",
			Help: "Records handled by consumers (a message, or one record of a bundle), by outcome (ack, retry, dead).",
		}, []string{"consumer", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tani_consumer_handle_seconds",
			Help:    "Time a consumer's handler took per call: one message, or one batch under RunBatch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"consumer"}),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tani_consumer_batch_messages",
			Help:    "Records handed to a consumer's handler per call (a bundle counts its records).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}, []string{"consumer"}),
	}
	m.lag = &lagCollector{}
	reg.MustRegister(m.messages, m.duration, m.batch, m.lag)
	return m
}

// Consumer runs a handler over a durable pull consumer.
type Consumer struct {
	cfg     ConsumerConfig
	js      jetstream.JetStream
	logger  *slog.Logger
	metrics *Metrics
	cons    jetstream.Consumer
}

// NewConsumer prepares a consumer; Start creates it on the server.
func NewConsumer(cfg ConsumerConfig, js jetstream.JetStream, logger *slog.Logger, metrics *Metrics) *Consumer {
	cfg.defaults()
	return &Consumer{cfg: cfg, js: js, logger: logger.With("consumer", cfg.Durable), metrics: metrics}
}

// Start creates or updates the durable consumer (idempotent).
func (c *Consumer) Start(ctx context.Context) error {
	// The runner dead-letters at MaxDeliver itself; the server's limit is
	// a backstop one higher so a message is never silently abandoned.
	maxDeliver := c.cfg.MaxDeliver + 1
	if c.cfg.MaxDeliver < 0 {
		maxDeliver = -1
	}
	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.cfg.Stream, jetstream.ConsumerConfig{
		Durable:        c.cfg.Durable,
		FilterSubjects: c.cfg.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		MaxDeliver:     maxDeliver,
		MaxAckPending:  4 * c.cfg.Buffer,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("ensure consumer %s on %s: %w", c.cfg.Durable, c.cfg.Stream, err)
	}
	c.cons = cons
	c.metrics.lag.add(c)
	return nil
}

// BatchHandler processes messages together, typically in one
// transaction, and returns one error per message, in order, with the same
// meaning as a Handler's: nil once that message's effect is committed, an
// apperr Invalid or Conflict error for a poison message, anything else to
// have it redelivered. Batching amortizes a commit (an fsync) and the round
// trips over many messages; a poison message must still fail alone.
type BatchHandler func(ctx context.Context, msgs []jetstream.Msg) []error

// Run handles messages one by one until ctx is done, then drains what it
// had already pulled and returns nil. A bundle's records are handled one
// by one too.
func (c *Consumer) Run(ctx context.Context, handle Handler) error {
	return c.run(ctx, 1, func(ctx context.Context, msgs []jetstream.Msg) []error {
		errs := make([]error, len(msgs))
		for i, msg := range msgs {
			errs[i] = handle(ctx, msg)
		}
		return errs
	})
}

// RunBatch is Run for a BatchHandler: it hands over whatever has arrived,
// up to MaxBatch records, as soon as the previous batch is settled. It
// never waits to fill a batch, so a lone message is not delayed; under
// load, messages pile up while a batch is handled and batches grow.
func (c *Consumer) RunBatch(ctx context.Context, handle BatchHandler) error {
	return c.run(ctx, c.cfg.MaxBatch, handle)
}

// A StagedHandler handles a batch in two stages, so that batches overlap:
// it prepares the batch — work that changes nothing and needs no order
// with other batches, such as decoding and checking signatures — and
// returns the function that commits it (stores, publishes) and returns
// one error per message, with a BatchHandler's meaning. While one batch
// commits, mostly waiting on the database, the next is prepared on the
// CPU. Commits run one at a time, in the order the batches were taken.
type StagedHandler func(ctx context.Context, msgs []jetstream.Msg) (commit func(ctx context.Context) []error)

// RunStaged is RunBatch for a StagedHandler: batch n+1 is taken and
// prepared while batch n commits. At most one prepared batch waits for
// its commit, so no more than two batches are held at once.
func (c *Consumer) RunStaged(ctx context.Context, handle StagedHandler) error {
	type prepared struct {
		msgs   []jetstream.Msg
		units  []jetstream.Msg // what the handler got: one per record
		from   []int           // the message of each unit; nil when they are msgs
		ctx    context.Context
		cancel context.CancelFunc
		start  time.Time
		commit func(context.Context) []error
	}
	queue := make(chan prepared)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		for p := range queue {
			errs := p.commit(p.ctx)
			c.settleBatch(p.ctx, p.msgs, p.units, p.from, errs, p.start)
			p.cancel()
		}
	}()
	defer func() {
		close(queue)
		<-committed
	}()
	return c.pull(ctx, c.cfg.MaxBatch, true, func(work context.Context, msgs []jetstream.Msg) {
		ctx, cancel := context.WithTimeout(work, c.cfg.HandleTimeout)
		start := time.Now()
		units, from := units(msgs)
		queue <- prepared{msgs: msgs, units: units, from: from, ctx: ctx, cancel: cancel, start: start, commit: handle(ctx, units)}
	})
}

// pullExpiry bounds how long a pull request waits on the consumer's leader.
const pullExpiry = 5 * time.Second

func (c *Consumer) run(ctx context.Context, maxBatch int, handle BatchHandler) error {
	return c.pull(ctx, maxBatch, false, func(work context.Context, msgs []jetstream.Msg) {
		c.handle(work, msgs, handle)
	})
}

// pull hands take whatever has arrived, up to maxBatch messages, until
// ctx is done, then drains what it had already pulled. take owns the
// slice it is given when fresh is set (it may still hold it after
// returning); otherwise the slice is reused for the next batch.
func (c *Consumer) pull(ctx context.Context, maxBatch int, fresh bool, take func(work context.Context, msgs []jetstream.Msg)) error {
	// A pull request lives on the consumer's leader. When that node is lost,
	// the client notices only by missed heartbeats (half the expiry), and
	// the default 30 s expiry would leave the consumer idle for up to 30 s
	// after a cluster node dies; 5 s keeps that gap to a few seconds for
	// an idle-time cost of one small request every 5 s.
	it, err := c.cons.Messages(jetstream.PullMaxMessages(c.cfg.Buffer), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.cfg.Durable, err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	// The iterator only blocks; a pump turns it into a channel so that
	// what has already arrived can be taken without waiting.
	arrived := make(chan jetstream.Msg, c.cfg.Buffer)
	var pumpErr error
	go func() {
		defer close(arrived)
		pumpErr = c.pump(ctx, it, arrived)
	}()
	// In-flight work finishes after shutdown starts: acks after commit.
	work := context.WithoutCancel(ctx)
	batch := make([]jetstream.Msg, 0, maxBatch)
	for {
		msg, ok := <-arrived
		if !ok {
			return pumpErr // read after close: the pump has returned
		}
		if fresh {
			batch = make([]jetstream.Msg, 0, maxBatch)
		}
		batch = append(batch[:0], msg)
		records := RecordsIn(msg.Headers())
	fill:
		for records < maxBatch {
			select {
			case msg, ok := <-arrived:
				if !ok {
					break fill
				}
				batch = append(batch, msg)
				records += RecordsIn(msg.Headers())
			default:
				break fill
			}
		}
		take(work, batch)
	}
}

// pump moves pulled messages to out until the iterator is drained or the
// connection is closed for good.
func (c *Consumer) pump(ctx context.Context, it jetstream.MessagesContext, out chan<- jetstream.Msg) error {
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			// Heartbeat misses and reconnects are reported here; the
			// iterator keeps pulling once the server is back.
			c.logger.WarnContext(ctx, "pull", "err", err)
			if errors.Is(err, nats.ErrConnectionClosed) {
				return fmt.Errorf("consume %s: %w", c.cfg.Durable, err)
			}
			continue
		}
		out <- msg
	}
}

// handle runs one batch and settles every message by its own outcome.
func (c *Consumer) handle(ctx context.Context, msgs []jetstream.Msg, handle BatchHandler) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HandleTimeout)
	defer cancel()
	start := time.Now()
	units, from := units(msgs)
	c.settleBatch(ctx, msgs, units, from, handle(ctx, units), start)
}

// settleBatch settles every message of a batch by the outcomes of the
// units the handler got (one per record; from says whose, nil when the
// units are the messages): a message of one record by its own, a bundle
// by all of its records' (settleBundle).
func (c *Consumer) settleBatch(ctx context.Context, msgs, units []jetstream.Msg, from []int, errs []error, start time.Time) {
	c.metrics.duration.WithLabelValues(c.cfg.Durable).Observe(time.Since(start).Seconds())
	c.metrics.batch.WithLabelValues(c.cfg.Durable).Observe(float64(len(units)))
	if len(errs) != len(units) {
		// A handler bug; no message may be acked on a guess.
		err := fmt.Errorf("batch handler returned %d results for %d messages", len(errs), len(units))
		c.logger.ErrorContext(ctx, "batch handler", "err", err)
		errs = make([]error, len(units))
		for i := range errs {
			errs[i] = err
		}
	}
	if from == nil {
		for i, msg := range msgs {
			c.settleOutcome(ctx, msg, errs[i])
		}
		return
	}
	for i, start := 0, 0; i < len(msgs); i++ {
		end := start
		for end < len(units) && from[end] == i {
			end++
		}
		if end-start == 1 && units[start] == msgs[i] {
			c.settleOutcome(ctx, msgs[i], errs[start])
		} else {
			c.settleBundle(ctx, msgs[i], units[start:end], errs[start:end])
		}
		start = end
	}
}

// settleBundle settles a bundle by its records' outcomes. While any record
// failed for a reason that may pass, the bundle is delivered again, whole
// (handlers are idempotent, so the records already stored are no-ops
// then); once none may pass, each refused record (or each given up on,
// at MaxDeliver) is dead-lettered on its own, as a message of one record,
// and the bundle is acknowledged. If a dead letter cannot be published
// the bundle is delivered again: no record is dropped.
func (c *Consumer) settleBundle(ctx context.Context, msg jetstream.Msg, units []jetstream.Msg, errs []error) {
	delivered := uint64(1)
	if md, mdErr := msg.Metadata(); mdErr == nil {
		delivered = md.NumDelivered
	}
	givingUp := c.cfg.MaxDeliver > 0 && delivered >= uint64(c.cfg.MaxDeliver)
	retry := func(err error) {
		c.logger.WarnContext(ctx, "handler failed; will retry the bundle", "subject", msg.Subject(), "records", len(units), "delivered", delivered, "err", err)
		nakErr := msg.NakWithDelay(backoff(delivered))
		for range units {
			c.settle(ctx, msg, "retry", nakErr)
		}
	}
	if !givingUp {
		for _, err := range errs {
			if err != nil && !apperr.Is(err, apperr.Invalid) && !apperr.Is(err, apperr.Conflict) {
				retry(err)
				return
			}
		}
	}
	dead := 0
	for i, err := range errs {
		if err == nil {
			continue
		}
		poison := apperr.Is(err, apperr.Invalid) || apperr.Is(err, apperr.Conflict)
		reason := err.Error()
		if !poison {
			reason = fmt.Sprintf("gave up after %d deliveries: %v", delivered, err)
		}
		if dlErr := c.deadLetter(ctx, units[i], reason, refusalOf(err, poison, delivered)); dlErr != nil {
			retry(fmt.Errorf("dead-letter a record of the bundle: %w", dlErr))
			return
		}
		c.logger.WarnContext(ctx, "dead-lettered a record of a bundle", "subject", msg.Subject(), "reason", reason)
		dead++
	}
	ackErr := msg.Ack()
	for range len(units) - dead {
		c.settle(ctx, msg, "ack", ackErr)
	}
	for range dead {
		c.settle(ctx, msg, "dead", ackErr)
	}
}

// settleOutcome acks, retries or dead-letters msg by its handler's error.
func (c *Consumer) settleOutcome(ctx context.Context, msg jetstream.Msg, err error) {
	if err == nil {
		c.settle(ctx, msg, "ack", msg.Ack())
		return
	}
	delivered := uint64(1)
	if md, mdErr := msg.Metadata(); mdErr == nil {
		delivered = md.NumDelivered
	}
	poison := apperr.Is(err, apperr.Invalid) || apperr.Is(err, apperr.Conflict)
	if poison || (c.cfg.MaxDeliver > 0 && delivered >= uint64(c.cfg.MaxDeliver)) {
		reason := err.Error()
		if !poison {
			reason = fmt.Sprintf("gave up after %d deliveries: %v", delivered, err)
		}
		if dlErr := c.deadLetter(ctx, msg, reason, refusalOf(err, poison, delivered)); dlErr != nil {
			// Never drop: leave it for redelivery and try again later.
			c.logger.ErrorContext(ctx, "dead-letter publish failed; will retry", "subject", msg.Subject(), "err", dlErr)
			c.settle(ctx, msg, "retry", msg.NakWithDelay(backoff(delivered)))
			return
		}
		c.logger.WarnContext(ctx, "dead-lettered", "subject", msg.Subject(), "reason", reason)
		c.settle(ctx, msg, "dead", msg.Term())
		return
	}
	c.logger.WarnContext(ctx, "handler failed; will retry", "subject", msg.Subject(), "delivered", delivered, "err", err)
	c.settle(ctx, msg, "retry", msg.NakWithDelay(backoff(delivered)))
}

func (c *Consumer) settle(ctx context.Context, msg jetstream.Msg, outcome string, err error) {
	c.metrics.messages.WithLabelValues(c.cfg.Durable, outcome).Inc()
	if err != nil {
		// The server will redeliver after AckWait; handlers are idempotent.
		c.logger.WarnContext(ctx, "settle message", "outcome", outcome, "subject", msg.Subject(), "err", err)
	}
}

// Refusal classes (HeaderDeadClass): why a message was dead-lettered.
const (
	ClassInvalid  = "invalid"  // the handler found it invalid (apperr.Invalid)
	ClassConflict = "conflict" // it contradicts what is stored (apperr.Conflict)
	ClassGaveUp   = "gave_up"  // it kept failing for MaxDeliver deliveries
)

// refusal is what a dead letter says to the sender of the message, as
// opposed to the operators' full reason: a class and a notice without
// internal detail.
type refusal struct{ class, notice string }

// refusalOf classifies a handler's final error. An apperr error's message
// (and field errors) are client-safe by contract; a transient error's are
// not, so a message given up on gets a fixed notice.
func refusalOf(err error, poison bool, delivered uint64) refusal {
	if !poison {
		return refusal{ClassGaveUp, fmt.Sprintf("the platform failed to process this record %d times; operators have been alerted and may process it again", delivered)}
	}
	r := refusal{class: ClassInvalid}
	if apperr.Is(err, apperr.Conflict) {
		r.class = ClassConflict
	}
	if e, ok := apperr.As(err); ok {
		r.notice = e.Message
		for _, f := range e.Fields {
			r.notice += "; " + f.Field + ": " + f.Message
		}
	}
	return r
}

// headerValue makes s safe as a NATS header value (no line breaks or other
// control characters, which would corrupt the protocol) and bounds it.
func headerValue(s string) string {
	const limit = 2000
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "…"
	}
	return s
}

// deadLetter republishes msg on dead.<subject> with the reason in headers.
// Its message ID is derived from the original's so a retried dead-letter is
// stored once. The publish is acknowledged by JetStream before the
// original is terminated, so the refusal is durable before the message
// leaves its stream: whoever must hear of it (the sender's status view,
// operators) reads it from DEAD.
func (c *Consumer) deadLetter(ctx context.Context, msg jetstream.Msg, reason string, r refusal) error {
	dl := nats.NewMsg(SubjectDeadPrefix + msg.Subject())
	dl.Data = msg.Data()
	for k, v := range msg.Headers() {
		dl.Header[k] = v
	}
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		if u, ok := msg.(*unit); ok {
			// A dead letter is one record: the bundle's id and the
			// record's place in it.
			id += "#" + strconv.Itoa(u.index)
		}
		dl.Header.Set(jetstream.MsgIDHeader, "dead:"+c.cfg.Durable+":"+id)
	}
	dl.Header.Del(HeaderRecords)
	dl.Header.Set(HeaderDeadReason, headerValue(reason))
	dl.Header.Set(HeaderDeadClass, r.class)
	dl.Header.Set(HeaderDeadNotice, headerValue(r.notice))
	dl.Header.Set(HeaderDeadConsumer, c.cfg.Durable)
	dl.Header.Set(HeaderDeadSubject, msg.Subject())
	dl.Header.Set(HeaderDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	_, err := c.js.PublishMsg(ctx, dl)
	return err
}

// backoff grows with each delivery, capped at one minute.
func backoff(delivered uint64) time.Duration {
	d := 250 * time.Millisecond << min(delivered, 8)
	return min(d, time.Minute)
}
