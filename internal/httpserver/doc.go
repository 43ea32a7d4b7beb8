// Package httpserver builds the one echo instance a Tani process serves:
// the common error shape, strict JSON decoding with field errors, request
// IDs, a body-size limit, access logs and HTTP metrics, plus /healthz,
// /readyz and /metrics. It must never hold domain logic; modules mount their
// own routes under their prefix.
package httpserver
