package fabric

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/chaincode"
)

// Client calls the anchor chaincode through a peer's gateway. It is safe for
// concurrent use.
type Client struct {
	cfg      Config
	logger   *slog.Logger
	conn     *grpc.ClientConn
	gw       *client.Gateway
	network  *client.Network
	contract *client.Contract
	creator  []byte // serialized identity, for commit-status requests
	backoff  time.Duration
}

// Dial connects to the gateway described by cfg. gRPC connects lazily, so
// Dial succeeds while the peer is down; calls then fail and are retried
// where safe.
func Dial(cfg Config, logger *slog.Logger) (*Client, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	id, sign, err := cfg.loadIdentity()
	if err != nil {
		return nil, err
	}
	creds, err := cfg.transportCredentials()
	if err != nil {
		return nil, err
	}
	// Reconnect soon after the peer returns: the default backoff grows to
	// two minutes, which would hold back the anchoring backlog for that long.
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(creds), grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
		MinConnectTimeout: 5 * time.Second,
	}))
	if err != nil {
		return nil, fmt.Errorf("fabric: dial %s: %w", cfg.Endpoint, err)
	}
	// The *WithContext calls below carry their own deadlines; these defaults
	// bound anything the client library calls without one.
	gw, err := client.Connect(id, client.WithSign(sign), client.WithClientConnection(conn),
		client.WithEvaluateTimeout(cfg.EvaluateTimeout), client.WithEndorseTimeout(cfg.EndorseTimeout),
		client.WithSubmitTimeout(cfg.SubmitTimeout), client.WithCommitStatusTimeout(cfg.CommitStatusTimeout))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("fabric: connect gateway: %w", err)
	}
	creator, err := proto.Marshal(&msp.SerializedIdentity{Mspid: id.MspID(), IdBytes: id.Credentials()})
	if err != nil {
		gw.Close()
		conn.Close()
		return nil, fmt.Errorf("fabric: serialize identity: %w", err)
	}
	network := gw.GetNetwork(cfg.Channel)
	return &Client{
		cfg: cfg, logger: logger, conn: conn, gw: gw, network: network,
		contract: network.GetContract(cfg.Chaincode), creator: creator, backoff: 200 * time.Millisecond,
	}, nil
}

// Close closes the gateway and the connection.
func (c *Client) Close() error {
	return errors.Join(c.gw.Close(), c.conn.Close())
}

// Channel is the channel anchors go to.
func (c *Client) Channel() string { return c.cfg.Channel }

// Chaincode is the anchor chaincode's name on that channel.
func (c *Client) Chaincode() string { return c.cfg.Chaincode }

// Anchored is a checkpoint the chain accepted: the chaincode's record and
// the block that committed it.
type Anchored struct {
	chaincode.Anchor
	BlockNumber uint64
}

// InvalidatedError is a transaction that was ordered but invalidated by the
// committing peers: the fabric-gateway client reports it as a
// *client.CommitError from Submit; Tani reads the status itself (so that it
// knows the TxID before submitting) and reports it as this.
type InvalidatedError struct {
	TxID string
	Code peer.TxValidationCode
}

func (e *InvalidatedError) Error() string {
	return fmt.Sprintf("transaction %s was invalidated: %s", e.TxID, e.Code)
}

// RegisterLog registers origin's note verifier key. The identity must be an
// organization admin.
func (c *Client) RegisterLog(ctx context.Context, origin, publicKey string) error {
	_, _, err := c.submit(ctx, "RegisterLog", []string{origin, publicKey}, nil)
	return err
}

// Log returns origin's registration, or nil if it is not registered.
func (c *Client) Log(ctx context.Context, origin string) (*chaincode.Log, error) {
	b, err := c.evaluate(ctx, "GetLog", origin)
	if err != nil {
		if strings.Contains(err.Error(), "is not registered") {
			return nil, nil
		}
		return nil, err
	}
	var lg chaincode.Log
	if err := json.Unmarshal(b, &lg); err != nil {
		return nil, fmt.Errorf("fabric: decode log %s: %w", origin, err)
	}
	return &lg, nil
}

// Anchor submits a signed checkpoint note and its consistency proof from the
// latest anchored size. recordTxID is called with the transaction ID before
// anything is sent, and again whenever a retry needs a new transaction, so
// that a crash in between leaves a TxID to look up.
func (c *Client) Anchor(ctx context.Context, checkpointNote []byte, proof [][]byte, recordTxID func(txID string) error) (*Anchored, error) {
	hashes := make([]string, len(proof))
	for i, h := range proof {
		hashes[i] = base64.StdEncoding.EncodeToString(h)
	}
	p, err := json.Marshal(hashes)
	if err != nil {
		return nil, fmt.Errorf("fabric: encode proof: %w", err)
	}
	result, st, err := c.submit(ctx, "Anchor", []string{string(checkpointNote), string(p)}, recordTxID)
	if err != nil {
		return nil, err
	}
	var a Anchored
	if err := json.Unmarshal(result, &a.Anchor); err != nil {
		return nil, fmt.Errorf("fabric: decode anchor of tx %s: %w", st.TransactionID, err)
	}
	a.BlockNumber = st.BlockNumber
	return &a, nil
}

// GetAnchor returns origin's anchor at size, or nil if none is.
func (c *Client) GetAnchor(ctx context.Context, origin string, size uint64) (*chaincode.Anchor, error) {
	return c.evaluateAnchor(ctx, "GetAnchor", origin, strconv.FormatUint(size, 10))
}

// LatestAnchor returns origin's latest anchor, or nil if none is.
func (c *Client) LatestAnchor(ctx context.Context, origin string) (*chaincode.Anchor, error) {
	return c.evaluateAnchor(ctx, "LatestAnchor", origin)
}

func (c *Client) evaluateAnchor(ctx context.Context, fn string, args ...string) (*chaincode.Anchor, error) {
	b, err := c.evaluate(ctx, fn, args...)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, nil
	}
	var a chaincode.Anchor
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("fabric: decode %s result: %w", fn, err)
	}
	return &a, nil
}

// TransactionStatus returns the validation code and block of a committed
// transaction. It waits (up to the commit-status timeout) while the
// transaction is not committed.
func (c *Client) TransactionStatus(ctx context.Context, txID string) (*client.Status, error) {
	req, err := proto.Marshal(&gateway.CommitStatusRequest{TransactionId: txID, ChannelId: c.cfg.Channel, Identity: c.creator})
	if err != nil {
		return nil, fmt.Errorf("fabric: encode commit status request: %w", err)
	}
	signed, err := proto.Marshal(&gateway.SignedCommitStatusRequest{Request: req})
	if err != nil {
		return nil, fmt.Errorf("fabric: encode commit status request: %w", err)
	}
	commit, err := c.gw.NewCommit(signed)
	if err != nil {
		return nil, fmt.Errorf("fabric: commit status of %s: %w", txID, err)
	}
	return c.status(ctx, commit)
}

// Evaluate runs fn of the configured chaincode as a query on one peer,
// retrying transient failures, and returns its result. It serves any
// chaincode's client (the vouchers client uses it); the anchor methods
// above are built on the same calls.
func (c *Client) Evaluate(ctx context.Context, fn string, args ...string) ([]byte, error) {
	return c.evaluate(ctx, fn, args...)
}

// Submit endorses, submits and waits for fn of the configured chaincode,
// retrying each step only where the gateway's error class says it is safe
// (see submit), and returns the result and the commit status. recordTxID,
// when set, learns every transaction ID before anything is sent.
func (c *Client) Submit(ctx context.Context, fn string, args []string, recordTxID func(txID string) error) ([]byte, *client.Status, error) {
	return c.submit(ctx, fn, args, recordTxID)
}

// MSPID is the MSP ID of the identity the client acts as.
func (c *Client) MSPID() string { return c.cfg.MSPID }

// evaluate runs a query on one peer, retrying transient failures: a query
// changes nothing, so retrying is always safe.
func (c *Client) evaluate(ctx context.Context, fn string, args ...string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.EvaluateTimeout)
		b, err := c.contract.EvaluateWithContext(cctx, fn, client.WithArguments(args...))
		cancel()
		if err == nil {
			return b, nil
		}
		if !transient(err) || attempt >= c.cfg.Retries {
			return nil, fmt.Errorf("fabric: evaluate %s: %w", fn, err)
		}
		if err := c.wait(ctx, attempt, "evaluate "+fn, err); err != nil {
			return nil, err
		}
	}
}

// submit endorses, submits and waits for a transaction, retrying each step
// only where the gateway's error class says it is safe:
//
//   - EndorseError: nothing was ordered; a transient failure re-endorses
//     the same proposal (same TxID). A chaincode rejection is final.
//   - SubmitError: the orderer may or may not have the transaction; a
//     transient failure resubmits the same signed transaction, which the
//     peers' duplicate-TxID check makes harmless.
//   - CommitStatusError: the outcome is unknown; the status of the same
//     TxID is asked again, never a new transaction.
//   - Invalidated (CommitError): the transaction wrote nothing; an MVCC or
//     phantom-read conflict is retried with a new proposal, after
//     recordTxID learns the new TxID.
func (c *Client) submit(ctx context.Context, fn string, args []string, recordTxID func(string) error) ([]byte, *client.Status, error) {
	for attempt := 0; ; attempt++ {
		proposal, err := c.contract.NewProposal(fn, client.WithArguments(args...))
		if err != nil {
			return nil, nil, fmt.Errorf("fabric: %s: build proposal: %w", fn, err)
		}
		txID := proposal.TransactionID()
		if recordTxID != nil {
			if err := recordTxID(txID); err != nil {
				return nil, nil, fmt.Errorf("fabric: %s: record tx %s: %w", fn, txID, err)
			}
		}
		log := c.logger.With("fn", fn, "tx_id", txID)
		tx, err := c.endorse(ctx, proposal, log)
		if err != nil {
			return nil, nil, err
		}
		commit, err := c.submitTx(ctx, tx, log)
		if err != nil {
			return nil, nil, err
		}
		st, err := c.status(ctx, commit)
		if err != nil {
			return nil, nil, err
		}
		if st.Successful {
			log.DebugContext(ctx, "committed", "block", st.BlockNumber)
			return tx.Result(), st, nil
		}
		inv := &InvalidatedError{TxID: txID, Code: st.Code}
		conflict := st.Code == peer.TxValidationCode_MVCC_READ_CONFLICT || st.Code == peer.TxValidationCode_PHANTOM_READ_CONFLICT
		if !conflict || attempt >= c.cfg.Retries {
			return nil, nil, fmt.Errorf("fabric: %s: %w", fn, inv)
		}
		if err := c.wait(ctx, attempt, fn, inv); err != nil {
			return nil, nil, err
		}
	}
}

func (c *Client) endorse(ctx context.Context, p *client.Proposal, log *slog.Logger) (*client.Transaction, error) {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.EndorseTimeout)
		tx, err := p.EndorseWithContext(cctx)
		cancel()
		if err == nil {
			return tx, nil
		}
		if !(transient(err) || lagging(err)) || attempt >= c.cfg.Retries {
			return nil, fmt.Errorf("fabric: endorse tx %s: %w", p.TransactionID(), err)
		}
		if err := c.wait(ctx, attempt, "endorse", err); err != nil {
			return nil, err
		}
		log.DebugContext(ctx, "re-endorsing")
	}
}

func (c *Client) submitTx(ctx context.Context, tx *client.Transaction, log *slog.Logger) (*client.Commit, error) {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.SubmitTimeout)
		commit, err := tx.SubmitWithContext(cctx)
		cancel()
		if err == nil {
			return commit, nil
		}
		if !transient(err) || attempt >= c.cfg.Retries {
			return nil, fmt.Errorf("fabric: submit tx %s: %w", tx.TransactionID(), err)
		}
		if err := c.wait(ctx, attempt, "submit", err); err != nil {
			return nil, err
		}
		log.DebugContext(ctx, "resubmitting the same transaction")
	}
}

func (c *Client) status(ctx context.Context, commit *client.Commit) (*client.Status, error) {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CommitStatusTimeout)
		st, err := commit.StatusWithContext(cctx)
		cancel()
		if err == nil {
			return st, nil
		}
		if !transient(err) || attempt >= c.cfg.Retries {
			return nil, fmt.Errorf("fabric: commit status of tx %s: %w", commit.TransactionID(), err)
		}
		if err := c.wait(ctx, attempt, "commit status", err); err != nil {
			return nil, err
		}
	}
}

// wait sleeps an exponential backoff before retry attempt+1.
func (c *Client) wait(ctx context.Context, attempt int, what string, cause error) error {
	d := min(c.backoff<<attempt, 10*time.Second)
	c.logger.WarnContext(ctx, "fabric call failed; retrying", "call", what, "attempt", attempt+1, "in", d, "err", cause)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("fabric: %s: %w (last error: %w)", what, ctx.Err(), cause)
	case <-t.C:
		return nil
	}
}

// lagging reports whether an endorsement failed after the gateway's first
// endorser approved: another organization's peer answered differently,
// which on a healthy network means it has not yet committed the block the
// first one read (peers commit a block at slightly different moments). The
// same proposal endorsed again a moment later is safe: nothing was
// ordered. A chaincode that disagrees for good fails once the retries run
// out.
func lagging(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Aborted && strings.Contains(s.Message(), "failed to collect enough transaction endorsements")
}

// transient reports whether a gateway error is worth retrying: the peer or
// orderer was unreachable or too slow. Everything else (a chaincode
// rejection, an endorsement-policy failure, an access denial) is a verdict.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}
