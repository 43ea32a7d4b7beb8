package fabricca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"
)

// Client calls one Fabric CA server over TLS.
type Client struct {
	// URL is https://host:port of the server.
	URL string
	// CAName selects the CA inside the server (its --ca.name).
	CAName string
	http   *http.Client
}

// New returns a client of the server at url (https://host:port) that
// trusts only the CA certificates in tlsCAFile.
func New(url, caName, tlsCAFile string) (*Client, error) {
	pemBytes, err := os.ReadFile(tlsCAFile)
	if err != nil {
		return nil, fmt.Errorf("fabric ca: TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("fabric ca: no certificate in %s", tlsCAFile)
	}
	return &Client{URL: url, CAName: caName, http: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}},
	}}, nil
}

// Error is a refusal by the CA server, with its codes and messages.
type Error struct {
	Status   int
	Messages []string
}

func (e *Error) Error() string {
	return fmt.Sprintf("fabric ca: %d %s: %v", e.Status, http.StatusText(e.Status), e.Messages)
}

// Info is what the CA says about itself.
type Info struct {
	CAName  string
	Version string
	// CAChain is the PEM certificate chain of the CA.
	CAChain []byte
}

// Info asks for the CA's name, version and certificate chain.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	body, err := json.Marshal(map[string]string{"caname": c.CAName})
	if err != nil {
		return nil, err
	}
	var res struct {
		CAName, CAChain, Version string
	}
	if err := c.call(ctx, "/api/v1/cainfo", body, nil, &res); err != nil {
		return nil, err
	}
	chain, err := base64.StdEncoding.DecodeString(res.CAChain)
	if err != nil {
		return nil, fmt.Errorf("fabric ca: decode CA chain: %w", err)
	}
	return &Info{CAName: res.CAName, Version: res.Version, CAChain: chain}, nil
}

// Enrollment is an enrolled identity: its key (generated here), its
// certificate and the CA's chain.
type Enrollment struct {
	Key     *ecdsa.PrivateKey
	Cert    *x509.Certificate
	CertPEM []byte
	CAChain []byte
}

// EnrollRequest says what certificate to ask for.
type EnrollRequest struct {
	Name, Secret string
	// Profile is "" for a signing certificate or "tls" for a TLS one.
	Profile string
	// Hosts are the DNS names and IPs a TLS server certificate carries.
	Hosts []string
}

// Enroll generates a P-256 key and has the CA certify it for the
// registered identity r.Name, authenticating with its enrollment secret.
func (c *Client) Enroll(ctx context.Context, r EnrollRequest) (*Enrollment, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fabric ca: generate key: %w", err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: r.Name}}
	for _, h := range r.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("fabric ca: certificate request: %w", err)
	}
	body, err := json.Marshal(map[string]any{
		"certificate_request": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		"profile":             r.Profile,
		"hosts":               r.Hosts,
		"caname":              c.CAName,
	})
	if err != nil {
		return nil, err
	}
	var res struct {
		Cert       string
		ServerInfo struct{ CAName, CAChain string }
	}
	auth := func(req *http.Request) error { req.SetBasicAuth(r.Name, r.Secret); return nil }
	if err := c.call(ctx, "/api/v1/enroll", body, auth, &res); err != nil {
		return nil, fmt.Errorf("enroll %s: %w", r.Name, err)
	}
	certPEM, err := base64.StdEncoding.DecodeString(res.Cert)
	if err != nil {
		return nil, fmt.Errorf("fabric ca: decode certificate: %w", err)
	}
	chain, err := base64.StdEncoding.DecodeString(res.ServerInfo.CAChain)
	if err != nil {
		return nil, fmt.Errorf("fabric ca: decode CA chain: %w", err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return nil, errors.New("fabric ca: no PEM certificate in the enrollment response")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("fabric ca: enrolled certificate: %w", err)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		return nil, errors.New("fabric ca: the enrolled certificate is not for the requested key")
	}
	return &Enrollment{Key: key, Cert: cert, CertPEM: certPEM, CAChain: chain}, nil
}

// Registration is an identity to register.
type Registration struct {
	Name string
	// Type is the identity's role, which the CA puts in its certificates'
	// OU: client, peer, admin or orderer.
	Type string
	// Secret is the enrollment secret; empty lets the CA choose one.
	Secret string
	// MaxEnrollments bounds the secret's use (0: the CA's default).
	MaxEnrollments int
}

// Register registers an identity, authenticated as registrar (an enrolled
// identity with registrar rights), and returns its enrollment secret.
func (c *Client) Register(ctx context.Context, registrar *Enrollment, r Registration) (string, error) {
	body, err := json.Marshal(map[string]any{
		"id": r.Name, "type": r.Type, "secret": r.Secret, "max_enrollments": r.MaxEnrollments,
		"affiliation": "", "caname": c.CAName,
	})
	if err != nil {
		return "", err
	}
	var res struct {
		Secret string `json:"secret"`
	}
	auth := func(req *http.Request) error {
		tok, err := token(registrar, req.Method, req.URL.RequestURI(), body)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", tok)
		return nil
	}
	if err := c.call(ctx, "/api/v1/register", body, auth, &res); err != nil {
		return "", fmt.Errorf("register %s: %w", r.Name, err)
	}
	return res.Secret, nil
}

// token is Fabric CA's authorization token: the caller's certificate and
// its ECDSA signature (low S, as Fabric verifies) over the method, the
// request URI, the body and the certificate.
func token(id *Enrollment, method, uri string, body []byte) (string, error) {
	b64 := base64.StdEncoding.EncodeToString
	b64cert := b64(id.CertPEM)
	payload := method + "." + b64([]byte(uri)) + "." + b64(body) + "." + b64cert
	digest := sha256.Sum256([]byte(payload))
	r, s, err := ecdsa.Sign(rand.Reader, id.Key, digest[:])
	if err != nil {
		return "", fmt.Errorf("fabric ca: sign token: %w", err)
	}
	half := new(big.Int).Rsh(id.Key.Curve.Params().N, 1)
	if s.Cmp(half) > 0 {
		s.Sub(id.Key.Curve.Params().N, s)
	}
	sig, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		return "", err
	}
	return b64cert + "." + b64(sig), nil
}

// call POSTs body to path and decodes the result of the CA's response
// envelope into out.
func (c *Client) call(ctx context.Context, path string, body []byte, auth func(*http.Request) error, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("fabric ca: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != nil {
		if err := auth(req); err != nil {
			return err
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("fabric ca: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("fabric ca: read response: %w", err)
	}
	var env struct {
		Success bool            `json:"success"`
		Result  json.RawMessage `json:"result"`
		Errors  []struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return &Error{Status: resp.StatusCode, Messages: []string{string(bytes.TrimSpace(b))}}
	}
	if !env.Success || resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		for _, m := range env.Errors {
			e.Messages = append(e.Messages, fmt.Sprintf("%d: %s", m.Code, m.Message))
		}
		return e
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return fmt.Errorf("fabric ca: decode result: %w", err)
	}
	return nil
}
