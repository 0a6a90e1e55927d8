// Package bearer authenticates gRPC calls between gatewire processes, and
// from backend services, with a shared secret sent as a bearer token in the
// "authorization" metadata. Servers install Interceptors; clients dial with
// Credentials. Tokens are compared in constant time and never logged.
package bearer

import (
	"context"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Credentials returns per-call credentials that send token. They work over
// plaintext connections (loopback, private networks); use TLS across
// untrusted networks.
func Credentials(token string) credentials.PerRPCCredentials {
	return tokenCreds{header: "Bearer " + token}
}

type tokenCreds struct{ header string }

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": c.header}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return false }

// ServerOptions returns interceptors that reject every call whose bearer
// token differs from token with codes.Unauthenticated; an empty token
// rejects every call. Methods whose full
// name starts with one of the exempt prefixes (e.g. "/grpc.health.v1.")
// pass without a token.
func ServerOptions(token string, exempt ...string) []grpc.ServerOption {
	a := authenticator{want: []byte("Bearer " + token), exempt: exempt}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			if err := a.check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return next(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
			if err := a.check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return next(srv, ss)
		}),
	}
}

type authenticator struct {
	want   []byte
	exempt []string
}

func (a authenticator) check(ctx context.Context, method string) error {
	for _, p := range a.exempt {
		if strings.HasPrefix(method, p) {
			return nil
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if len(a.want) == len("Bearer ") {
		return status.Error(codes.Unauthenticated, "no bearer token is configured on this server")
	}
	for _, got := range md.Get("authorization") {
		if subtle.ConstantTimeCompare([]byte(got), a.want) == 1 {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, "missing or wrong bearer token")
}
