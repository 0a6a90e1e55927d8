// Package push serves the worker's Push API (gatewire.push.v1) to backend
// services: each gRPC call maps onto one worker.API call, and the API's
// errors onto gRPC status codes. Install it on a gRPC server with
// bearer.ServerOptions for authentication.
package push

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatewire/gatewire/internal/worker"
	pushv1 "github.com/gatewire/gatewire/proto/gatewire/push/v1"
)

// Server implements pushv1.PushServiceServer over a worker.API.
type Server struct {
	pushv1.UnimplementedPushServiceServer
	api worker.API
}

// NewServer returns a Server calling api.
func NewServer(api worker.API) *Server { return &Server{api: api} }

// statusOf translates a worker.API error into a gRPC status.
func statusOf(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, worker.ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, worker.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, worker.ErrConflict):
		code = codes.FailedPrecondition
	case errors.Is(err, worker.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	default:
		return status.Error(codes.Internal, "internal error") // details stay in the worker
	}
	return status.Error(code, err.Error())
}

// SendToClient implements pushv1.PushServiceServer.
func (s *Server) SendToClient(ctx context.Context, r *pushv1.SendToClientRequest) (*pushv1.SendToClientResponse, error) {
	return &pushv1.SendToClientResponse{}, statusOf(s.api.SendToClient(ctx, r.GetClientId(), r.GetData(), r.GetBinary()))
}

// SendToUid implements pushv1.PushServiceServer.
func (s *Server) SendToUid(ctx context.Context, r *pushv1.SendToUidRequest) (*pushv1.SendToUidResponse, error) {
	n, err := s.api.SendToUID(ctx, r.GetUids(), r.GetData(), r.GetBinary())
	return &pushv1.SendToUidResponse{Delivered: uint32(n)}, statusOf(err)
}

// IsUidOnline implements pushv1.PushServiceServer.
func (s *Server) IsUidOnline(ctx context.Context, r *pushv1.IsUidOnlineRequest) (*pushv1.IsUidOnlineResponse, error) {
	online, err := s.api.IsUIDOnline(ctx, r.GetUid())
	return &pushv1.IsUidOnlineResponse{Online: online}, statusOf(err)
}

// BindUid implements pushv1.PushServiceServer.
func (s *Server) BindUid(ctx context.Context, r *pushv1.BindUidRequest) (*pushv1.BindUidResponse, error) {
	return &pushv1.BindUidResponse{}, statusOf(s.api.BindUID(ctx, r.GetClientId(), r.GetUid()))
}

// UnbindUid implements pushv1.PushServiceServer.
func (s *Server) UnbindUid(ctx context.Context, r *pushv1.UnbindUidRequest) (*pushv1.UnbindUidResponse, error) {
	return &pushv1.UnbindUidResponse{}, statusOf(s.api.UnbindUID(ctx, r.GetClientId(), r.GetUid()))
}

// GetClientIdByUid implements pushv1.PushServiceServer.
func (s *Server) GetClientIdByUid(ctx context.Context, r *pushv1.GetClientIdByUidRequest) (*pushv1.GetClientIdByUidResponse, error) {
	ids, err := s.api.ClientIDsByUID(ctx, r.GetUid())
	return &pushv1.GetClientIdByUidResponse{ClientIds: ids}, statusOf(err)
}

// GetUidByClientId implements pushv1.PushServiceServer.
func (s *Server) GetUidByClientId(ctx context.Context, r *pushv1.GetUidByClientIdRequest) (*pushv1.GetUidByClientIdResponse, error) {
	uid, err := s.api.UIDByClientID(ctx, r.GetClientId())
	return &pushv1.GetUidByClientIdResponse{Uid: uid}, statusOf(err)
}

// CloseClient implements pushv1.PushServiceServer.
func (s *Server) CloseClient(ctx context.Context, r *pushv1.CloseClientRequest) (*pushv1.CloseClientResponse, error) {
	return &pushv1.CloseClientResponse{}, statusOf(s.api.CloseClient(ctx, r.GetClientId(), r.GetData()))
}
