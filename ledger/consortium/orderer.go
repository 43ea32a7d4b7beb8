package consortium

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"time"

	"github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrOrdererUnreachable reports that no orderer of the consortium answered:
// the network is not running, or this consortium directory only serves a
// devnet, which has no ordering service and applies no configuration
// updates.
var ErrOrdererUnreachable = errors.New("no orderer of the consortium is reachable (start the network with `tani network up`; the devnet has no ordering service and does not apply configuration updates)")

// ordererTLS is the TLS configuration for the orderer's endpoints: the
// orderer organization's TLS CA, and mspID's admin TLS client certificate.
func (c *Consortium) ordererTLS(mspID string) (*tls.Config, error) {
	ca, err := os.ReadFile(c.TLSCAPath(c.Orderer.MSPID))
	if err != nil {
		return nil, fmt.Errorf("consortium: orderer TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("consortium: no certificate in the orderer TLS CA file")
	}
	certFile, keyFile := c.AdminTLSPaths(mspID)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("consortium: %s admin TLS client certificate: %w", mspID, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}, nil
}

// withOrderer runs fn on a connection to each orderer node in turn until
// one answers; fn's own errors (a refusal) are final.
func (c *Consortium) withOrderer(ctx context.Context, mspID string, fn func(context.Context, ab.AtomicBroadcastClient) error) error {
	tc, err := c.ordererTLS(mspID)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range c.Orderer.Nodes {
		conn, err := grpc.NewClient(n.Endpoint, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
			continue
		}
		err = fn(ctx, ab.NewAtomicBroadcastClient(conn))
		conn.Close()
		var u unreachable
		if errors.As(err, &u) {
			errs = append(errs, fmt.Errorf("%s at %s: %w", n.Name, n.Endpoint, u.err))
			continue
		}
		return err
	}
	return fmt.Errorf("consortium: %w: %w", ErrOrdererUnreachable, errors.Join(errs...))
}

// unreachable marks a transport failure, as opposed to an answer.
type unreachable struct{ err error }

func (u unreachable) Error() string { return u.err.Error() }

// Broadcast hands a signed envelope (a configuration update) to the
// ordering service and returns once an orderer accepted it for ordering;
// a refusal carries the orderer's status and message.
func (c *Consortium) Broadcast(ctx context.Context, mspID string, env *cb.Envelope) error {
	return c.withOrderer(ctx, mspID, func(ctx context.Context, cl ab.AtomicBroadcastClient) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		stream, err := cl.Broadcast(ctx, grpc.WaitForReady(false))
		if err != nil {
			return unreachable{err}
		}
		if err := stream.Send(env); err != nil {
			return unreachable{err}
		}
		resp, err := stream.Recv()
		if err != nil {
			return unreachable{err}
		}
		_ = stream.CloseSend()
		if resp.Status != cb.Status_SUCCESS {
			return fmt.Errorf("consortium: the orderer refused the update: %s: %s", resp.Status, resp.Info)
		}
		return nil
	})
}

// FetchConfig reads the channel's current configuration from the ordering
// service (the newest block's last configuration block), as mspID's admin,
// with the number of the block that holds it.
func (c *Consortium) FetchConfig(ctx context.Context, mspID string) (*cb.Config, uint64, error) {
	id, err := c.adminIdentity(mspID)
	if err != nil {
		return nil, 0, err
	}
	var config *cb.Config
	var number uint64
	err = c.withOrderer(ctx, mspID, func(ctx context.Context, cl ab.AtomicBroadcastClient) error {
		newest, err := c.deliverOne(ctx, cl, id, &ab.SeekPosition{Type: &ab.SeekPosition_Newest{Newest: &ab.SeekNewest{}}})
		if err != nil {
			return err
		}
		last, err := lastConfigIndex(newest)
		if err != nil {
			return err
		}
		block := newest
		if last != newest.Header.Number {
			if block, err = c.deliverOne(ctx, cl, id, &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: last}}}); err != nil {
				return err
			}
		}
		if config, err = configFromBlock(block); err != nil {
			return err
		}
		number = block.Header.Number
		return nil
	})
	return config, number, err
}

// deliverOne asks an orderer for one block of the channel.
func (c *Consortium) deliverOne(ctx context.Context, cl ab.AtomicBroadcastClient, id *configtx.SigningIdentity, pos *ab.SeekPosition) (*cb.Block, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	seek, err := proto.Marshal(&ab.SeekInfo{Start: pos, Stop: pos, Behavior: ab.SeekInfo_BLOCK_UNTIL_READY})
	if err != nil {
		return nil, fmt.Errorf("consortium: encode seek: %w", err)
	}
	chdr, err := proto.Marshal(&cb.ChannelHeader{Type: int32(cb.HeaderType_DELIVER_SEEK_INFO), ChannelId: c.Channel, Timestamp: timestamppb.Now()})
	if err != nil {
		return nil, fmt.Errorf("consortium: encode header: %w", err)
	}
	payload, err := proto.Marshal(&cb.Payload{Header: &cb.Header{ChannelHeader: chdr}, Data: seek})
	if err != nil {
		return nil, fmt.Errorf("consortium: encode payload: %w", err)
	}
	env := &cb.Envelope{Payload: payload}
	if err := id.SignEnvelope(env); err != nil {
		return nil, fmt.Errorf("consortium: sign seek: %w", err)
	}
	stream, err := cl.Deliver(ctx)
	if err != nil {
		return nil, unreachable{err}
	}
	if err := stream.Send(env); err != nil {
		return nil, unreachable{err}
	}
	var block *cb.Block
	for {
		resp, err := stream.Recv()
		if err != nil {
			if block == nil {
				return nil, unreachable{err}
			}
			return block, nil
		}
		switch t := resp.Type.(type) {
		case *ab.DeliverResponse_Block:
			block = t.Block
		case *ab.DeliverResponse_Status:
			if t.Status != cb.Status_SUCCESS {
				return nil, fmt.Errorf("consortium: deliver from the orderer: %s", t.Status)
			}
			if block == nil {
				return nil, errors.New("consortium: the orderer delivered no block")
			}
			return block, nil
		}
	}
}

// lastConfigIndex reads the number of the last configuration block from a
// block's SIGNATURES metadata (Fabric 2+ keeps it there).
func lastConfigIndex(block *cb.Block) (uint64, error) {
	md := block.GetMetadata().GetMetadata()
	if len(md) <= int(cb.BlockMetadataIndex_SIGNATURES) {
		return 0, errors.New("consortium: block has no signatures metadata")
	}
	var m cb.Metadata
	if err := proto.Unmarshal(md[cb.BlockMetadataIndex_SIGNATURES], &m); err != nil {
		return 0, fmt.Errorf("consortium: decode block metadata: %w", err)
	}
	var obm cb.OrdererBlockMetadata
	if err := proto.Unmarshal(m.Value, &obm); err != nil {
		return 0, fmt.Errorf("consortium: decode orderer block metadata: %w", err)
	}
	return obm.GetLastConfig().GetIndex(), nil
}

// ChannelStatus is what an orderer's channel participation API says about
// one channel.
type ChannelStatus struct {
	Name              string `json:"name"`
	ConsensusRelation string `json:"consensusRelation"`
	Status            string `json:"status"`
	Height            uint64 `json:"height"`
}

// participation calls an orderer node's channel participation API (what
// osnadmin does) as the orderer organization's admin.
func (c *Consortium) participation(ctx context.Context, n OrdererNode, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	tc, err := c.ordererTLS(c.Orderer.MSPID)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+n.AdminEndpoint+"/participation/v1/channels"+path, body)
	if err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("consortium: %s admin endpoint %s: %w", n.Name, n.AdminEndpoint, err)
	}
	return resp, nil
}

// OrdererChannel reports whether orderer node n has joined the channel
// (nil status when it has not).
func (c *Consortium) OrdererChannel(ctx context.Context, n OrdererNode) (*ChannelStatus, error) {
	resp, err := c.participation(ctx, n, http.MethodGet, "/"+c.Channel, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, nil
	case http.StatusOK:
		var st ChannelStatus
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("consortium: decode channel status: %w", err)
		}
		return &st, nil
	}
	return nil, fmt.Errorf("consortium: %s channel status: %s: %s", n.Name, resp.Status, bytes.TrimSpace(b))
}

// JoinOrderer joins orderer node n to the channel with the genesis block
// (`osnadmin channel join`); a node already joined is left alone.
func (c *Consortium) JoinOrderer(ctx context.Context, n OrdererNode) (*ChannelStatus, error) {
	if st, err := c.OrdererChannel(ctx, n); err != nil || st != nil {
		return st, err
	}
	block, err := os.ReadFile(c.GenesisBlockPath())
	if err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreateFormFile("config-block", "config.block")
	if err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	if _, err := part.Write(block); err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	resp, err := c.participation(ctx, n, http.MethodPost, "", &body, mw.FormDataContentType())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("consortium: join %s to %s: %s: %s", n.Name, c.Channel, resp.Status, bytes.TrimSpace(b))
	}
	var st ChannelStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("consortium: decode channel status: %w", err)
	}
	return &st, nil
}

// GenesisBlockPath is the channel's genesis block.
func (c *Consortium) GenesisBlockPath() string {
	return c.artifact(c.Channel + ".block")
}
