package bearer_test

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gatewire/gatewire/internal/bearer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const token = "s3cret-token"

// TestCredentials checks what the client side sends.
func TestCredentials(t *testing.T) {
	creds := bearer.Credentials(token)
	md, err := creds.GetRequestMetadata(t.Context(), "https://example/")
	if err != nil {
		t.Fatal(err)
	}
	if len(md) != 1 || md["authorization"] != "Bearer "+token {
		t.Errorf("GetRequestMetadata = %v, want only authorization: Bearer %s", md, token)
	}
	if creds.RequireTransportSecurity() {
		t.Error("RequireTransportSecurity = true; the credentials must work over plaintext loopback")
	}
}

// TestServerOptions checks, for a unary and a streaming method, which calls
// the interceptors let through.
func TestServerOptions(t *testing.T) {
	// The health service stands in for any service; Check is unary and
	// Watch is server-streaming. Nothing is exempt here.
	addr := serveHealth(t, bearer.ServerOptions(token)...)
	tests := []struct {
		name string
		// dial are the options besides the transport; md is sent as
		// outgoing metadata with every call.
		dial []grpc.DialOption
		md   []string
		want codes.Code
	}{
		{"RightToken", []grpc.DialOption{grpc.WithPerRPCCredentials(bearer.Credentials(token))}, nil, codes.OK},
		{"RightHeaderByHand", nil, []string{"authorization", "Bearer " + token}, codes.OK},
		{"NoToken", nil, nil, codes.Unauthenticated},
		{"WrongToken", []grpc.DialOption{grpc.WithPerRPCCredentials(bearer.Credentials("wrong"))}, nil, codes.Unauthenticated},
		{"EmptyToken", []grpc.DialOption{grpc.WithPerRPCCredentials(bearer.Credentials(""))}, nil, codes.Unauthenticated},
		{"TokenPrefix", []grpc.DialOption{grpc.WithPerRPCCredentials(bearer.Credentials(token[:len(token)-1]))}, nil, codes.Unauthenticated},
		{"TokenWithSuffix", []grpc.DialOption{grpc.WithPerRPCCredentials(bearer.Credentials(token + "x"))}, nil, codes.Unauthenticated},
		{"NoBearerScheme", nil, []string{"authorization", token}, codes.Unauthenticated},
		{"OtherScheme", nil, []string{"authorization", "Basic " + token}, codes.Unauthenticated},
		{"SchemeWithoutSpace", nil, []string{"authorization", "Bearer" + token}, codes.Unauthenticated},
		{"TokenInOtherHeader", nil, []string{"x-authorization", "Bearer " + token}, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := healthpb.NewHealthClient(dial(t, addr, tt.dial...))
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if tt.md != nil {
				ctx = metadata.AppendToOutgoingContext(ctx, tt.md...)
			}
			if got := status.Code(check(ctx, client)); got != tt.want {
				t.Errorf("unary Check: code %v, want %v", got, tt.want)
			}
			if got := status.Code(watch(ctx, client)); got != tt.want {
				t.Errorf("streaming Watch: code %v, want %v", got, tt.want)
			}
		})
	}
}

// TestExempt checks that methods under an exempt prefix pass without a
// token, and only those.
func TestExempt(t *testing.T) {
	tests := []struct {
		name             string
		exempt           []string
		wantCheck, wantW codes.Code
	}{
		{"Service", []string{"/grpc.health.v1."}, codes.OK, codes.OK},
		{"UnaryMethodOnly", []string{"/grpc.health.v1.Health/Check"}, codes.OK, codes.Unauthenticated},
		{"StreamingMethodOnly", []string{"/other.Service/", "/grpc.health.v1.Health/Watch"}, codes.Unauthenticated, codes.OK},
		{"OtherService", []string{"/grpc.reflection."}, codes.Unauthenticated, codes.Unauthenticated},
		{"NotAPrefix", []string{"grpc.health.v1."}, codes.Unauthenticated, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serveHealth(t, bearer.ServerOptions(token, tt.exempt...)...)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			anon := healthpb.NewHealthClient(dial(t, addr))
			if got := status.Code(check(ctx, anon)); got != tt.wantCheck {
				t.Errorf("Check without token: code %v, want %v", got, tt.wantCheck)
			}
			if got := status.Code(watch(ctx, anon)); got != tt.wantW {
				t.Errorf("Watch without token: code %v, want %v", got, tt.wantW)
			}
			authed := healthpb.NewHealthClient(dial(t, addr, grpc.WithPerRPCCredentials(bearer.Credentials(token))))
			if err := check(ctx, authed); err != nil {
				t.Errorf("Check with token: %v", err)
			}
			if err := watch(ctx, authed); err != nil {
				t.Errorf("Watch with token: %v", err)
			}
		})
	}
}

// check calls the unary Check and verifies a successful answer.
func check(ctx context.Context, c healthpb.HealthClient) error {
	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return status.Errorf(codes.Unknown, "Check answered %v, want SERVING", resp.GetStatus())
	}
	return nil
}

// watch opens the server-streaming Watch, reads its first message and ends
// the stream.
func watch(ctx context.Context, c healthpb.HealthClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	resp, err := stream.Recv()
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return status.Errorf(codes.Unknown, "Watch answered %v, want SERVING", resp.GetStatus())
	}
	return nil
}

// serveHealth serves the standard health service with opts on a loopback
// port until the test ends, and returns its address.
func serveHealth(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// dial returns a plaintext connection to addr, closed when the test ends.
func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}
