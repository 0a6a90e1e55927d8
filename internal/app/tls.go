package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLSConfig is the optional mutual TLS of the cluster's inner links
// (register, gateway ↔ worker): every process presents Cert and accepts
// only peers whose certificate CA signed. The shared secret is checked as
// well.
type TLSConfig struct {
	// Cert and Key are this process's PEM certificate and key.
	Cert, Key string
	// CA is the PEM bundle that signs every process's certificate.
	CA string
	// ServerName, when set, is the name the servers' certificates must
	// carry; empty accepts any certificate CA signed (processes are
	// dialled by IP address).
	ServerName string
}

func (t TLSConfig) enabled() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }

// load reads the certificate and the CA pool.
func (t TLSConfig) load() (tls.Certificate, *x509.CertPool, error) {
	if t.Cert == "" || t.Key == "" || t.CA == "" {
		return tls.Certificate{}, nil, errors.New("mutual TLS needs -tls-cert, -tls-key and -tls-ca together")
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
	}
	pem, err := os.ReadFile(t.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("-tls-ca %s: no PEM certificate", t.CA)
	}
	return cert, pool, nil
}

// serverOptions returns the gRPC server options of an inner-link server:
// none without TLS, else TLS that requires a client certificate.
func (t TLSConfig) serverOptions() ([]grpc.ServerOption, error) {
	if !t.enabled() {
		return nil, nil
	}
	cert, pool, err := t.load()
	if err != nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
	}))}, nil
}

// transport returns the transport credentials for dialling inner links.
func (t TLSConfig) transport() (credentials.TransportCredentials, error) {
	if !t.enabled() {
		return insecure.NewCredentials(), nil
	}
	cert, pool, err := t.load()
	if err != nil {
		return nil, err
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: t.ServerName, MinVersion: tls.VersionTLS13}
	if t.ServerName == "" {
		// Verify the chain but not the name: peers are dialled by address.
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		}
	}
	return credentials.NewTLS(c), nil
}
