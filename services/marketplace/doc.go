// Package marketplace is the distributors' portal and API under /portal:
// catalog, orders, input vouchers paid on proof of delivery, regional
// demand. It must never serve a farmer's data without a live consent naming
// the distributor.
//
// Today it owns the /portal route group; its features arrive with the
// marketplace issue.
package marketplace
