package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/register"
)

// pki writes PEM files into dir: a CA, a certificate it signed, and a
// self-signed impostor.
type pki struct{ ca, cert, key, rogueCert, rogueKey string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tmpl := func(serial int64, isCA bool) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "gatewire-test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: isCA, BasicConstraintsValid: true,
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
	}
	caKey := newKey()
	caTmpl := tmpl(1, true)
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key := newKey()
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl(2, false), caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	rogue := newKey()
	rogueTmpl := tmpl(3, false)
	rogueDER, err := x509.CreateCertificate(rand.Reader, rogueTmpl, rogueTmpl, &rogue.PublicKey, rogue)
	if err != nil {
		t.Fatal(err)
	}
	return pki{
		ca: write("ca.pem", "CERTIFICATE", caDER), cert: write("cert.pem", "CERTIFICATE", certDER), key: write("key.pem", "EC PRIVATE KEY", keyDER(key)),
		rogueCert: write("rogue.pem", "CERTIFICATE", rogueDER), rogueKey: write("rogue-key.pem", "EC PRIVATE KEY", keyDER(rogue)),
	}
}

// TestMutualTLS: with -tls-* set, an inner-link server accepts only
// clients presenting a certificate its CA signed, and clients accept only
// servers doing the same.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	good := TLSConfig{Cert: p.cert, Key: p.key, CA: p.ca}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- serveRegister(ctx, lis, RegisterConfig{Secret: "s", TLS: good}, register.NewMemoryTable(), directory.NewMemory(), nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveRegister: %v", err)
		}
	})

	check := func(name string, tc TLSConfig, wantOK bool) {
		t.Helper()
		opts, err := dialOptions("s", tc)
		if err != nil {
			t.Fatalf("%s: dialOptions: %v", name, err)
		}
		cc, err := grpc.NewClient(lis.Addr().String(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		_, err = healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
		if (err == nil) != wantOK {
			t.Errorf("%s: health check error %v, want ok=%v", name, err, wantOK)
		}
	}
	check("certificate from the CA", good, true)
	check("certificate from the CA, checked server name", TLSConfig{Cert: p.cert, Key: p.key, CA: p.ca, ServerName: "gatewire-other"}, false)
	check("no TLS", TLSConfig{}, false)
	check("self-signed certificate", TLSConfig{Cert: p.rogueCert, Key: p.rogueKey, CA: p.ca}, false)
	check("server not signed by the client's CA", TLSConfig{Cert: p.cert, Key: p.key, CA: p.rogueCert}, false)

	if _, err := dialOptions("s", TLSConfig{Cert: p.cert}); err == nil {
		t.Error("dialOptions accepted -tls-cert without -tls-key and -tls-ca")
	}
}
