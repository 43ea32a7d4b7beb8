package app

import (
	"context"
	"fmt"

	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// Vouchers is the module of the vouchers chaincode: the client services
// issue, redeem and settle with (App.Vouchers), and the projection of the
// chain's voucher events into Postgres (vouchers.voucher_states).
const Vouchers = "vouchers"

// Vouchers is the vouchers module's client (nil without the module), for
// the services wired after it and for end-to-end tests.
func (a *App) Vouchers() *vouchers.Client { return a.vouchers }

func (a *App) initVouchers() (Service, error) {
	logger := a.logger.With("module", Vouchers)
	ids, err := a.cfg.Vouchers.ParseIdentities()
	if err != nil {
		return nil, err
	}
	admin, err := a.adminGroup()
	if err != nil {
		return nil, err
	}
	var client *vouchers.Client
	var proj *vouchers.Projection
	return funcService{
		start: func(ctx context.Context) error {
			gw := a.cfg.Fabric
			gw.Chaincode = a.cfg.Vouchers.Chaincode
			if a.devnet != nil {
				// The devnet's organizations are all here: act as each
				// one's client, and register their roles as Tani's admin.
				ids = nil
				for _, org := range a.devnet.Orgs() {
					id, err := a.devnet.Identity(org, "client")
					if err != nil {
						return err
					}
					ids = append(ids, vouchers.Identity{MSPID: org, Cert: id.CertPath, Key: id.KeyPath})
				}
				adm, err := a.devnet.Identity(devnetAnchorOrg, "admin")
				if err != nil {
					return err
				}
				dc := a.devnet.ConnectionInfo().ClientConfig(adm, gw.Chaincode)
				dc.EvaluateTimeout, dc.EndorseTimeout, dc.SubmitTimeout = gw.EvaluateTimeout, gw.EndorseTimeout, gw.SubmitTimeout
				dc.CommitStatusTimeout, dc.Retries = gw.CommitStatusTimeout, gw.Retries
				gw = dc
				if err := registerDevnetRoles(ctx, a.devnet, gw, adm); err != nil {
					return err
				}
			} else if len(ids) == 0 {
				ids = []vouchers.Identity{{MSPID: gw.MSPID, Cert: gw.Cert, Key: gw.Key}}
			}
			c, err := vouchers.Dial(gw, ids, logger)
			if err != nil {
				return err
			}
			client = c
			proj = vouchers.NewProjection(a.pool, client, logger)
			proj.Routes(admin)
			a.vouchers = client
			logger.InfoContext(ctx, "vouchers on Fabric", "endpoint", gw.Endpoint, "channel", gw.Channel, "chaincode", gw.Chaincode, "acting_as", client.Identities())
			return nil
		},
		run:  func(ctx context.Context) error { return proj.Run(ctx) },
		stop: func(context.Context) error { return client.Close() },
	}, nil
}

// registerDevnetRoles registers the default organizations' voucher roles
// on the in-process devnet, as Tani's admin.
func registerDevnetRoles(ctx context.Context, n *devnet.Network, gw fabric.Config, adm *devnet.Identity) error {
	roles := map[string]string{}
	for org, role := range devnet.DefaultVoucherRoles() {
		for _, o := range n.Orgs() {
			if o == org {
				roles[org] = role
			}
		}
	}
	c, err := vouchers.Dial(gw, []vouchers.Identity{{MSPID: adm.MSPID, Cert: adm.CertPath, Key: adm.KeyPath}}, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.EnsureRegistered(ctx, adm.MSPID, roles); err != nil {
		return fmt.Errorf("register voucher roles on the devnet: %w", err)
	}
	return nil
}
