// Package push serves the worker's Push API (gatewire.push.v1) to backend
// services: each gRPC call maps onto one worker.API call, and the API's
// errors onto gRPC status codes. Install it on a gRPC server with
// bearer.ServerOptions for authentication.
package push

import (
	"context"
	"encoding/json"
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

// incomplete separates a partial result (some gateways did not answer in
// time) from a failure: the former is returned with incomplete set.
func incomplete(err error) (bool, error) {
	var ie *worker.IncompleteError
	if errors.As(err, &ie) {
		return true, nil
	}
	return false, err
}

// SendToAll implements pushv1.PushServiceServer.
func (s *Server) SendToAll(ctx context.Context, r *pushv1.SendToAllRequest) (*pushv1.SendToAllResponse, error) {
	n, err := s.api.SendToAll(ctx, r.GetData(), r.GetBinary(), r.GetClientIds(), r.GetExcludeClientIds())
	return &pushv1.SendToAllResponse{Delivered: uint32(n)}, statusOf(err)
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

// SendToGroup implements pushv1.PushServiceServer.
func (s *Server) SendToGroup(ctx context.Context, r *pushv1.SendToGroupRequest) (*pushv1.SendToGroupResponse, error) {
	n, err := s.api.SendToGroup(ctx, r.GetGroups(), r.GetData(), r.GetBinary(), r.GetExcludeClientIds())
	return &pushv1.SendToGroupResponse{Delivered: uint32(n)}, statusOf(err)
}

// CloseClient implements pushv1.PushServiceServer.
func (s *Server) CloseClient(ctx context.Context, r *pushv1.CloseClientRequest) (*pushv1.CloseClientResponse, error) {
	if r.GetDestroy() {
		return &pushv1.CloseClientResponse{}, statusOf(s.api.DestroyClient(ctx, r.GetClientId()))
	}
	return &pushv1.CloseClientResponse{}, statusOf(s.api.CloseClient(ctx, r.GetClientId(), r.GetData()))
}

// IsOnline implements pushv1.PushServiceServer.
func (s *Server) IsOnline(ctx context.Context, r *pushv1.IsOnlineRequest) (*pushv1.IsOnlineResponse, error) {
	online, err := s.api.IsOnline(ctx, r.GetClientId())
	return &pushv1.IsOnlineResponse{Online: online}, statusOf(err)
}

// BindUid implements pushv1.PushServiceServer.
func (s *Server) BindUid(ctx context.Context, r *pushv1.BindUidRequest) (*pushv1.BindUidResponse, error) {
	return &pushv1.BindUidResponse{}, statusOf(s.api.BindUID(ctx, r.GetClientId(), r.GetUid()))
}

// UnbindUid implements pushv1.PushServiceServer.
func (s *Server) UnbindUid(ctx context.Context, r *pushv1.UnbindUidRequest) (*pushv1.UnbindUidResponse, error) {
	return &pushv1.UnbindUidResponse{}, statusOf(s.api.UnbindUID(ctx, r.GetClientId(), r.GetUid()))
}

// uidsOf merges the single and the batched uid fields.
func uidsOf(uid string, uids []string) []string {
	if uid == "" {
		return uids
	}
	return append([]string{uid}, uids...)
}

// IsUidOnline implements pushv1.PushServiceServer.
func (s *Server) IsUidOnline(ctx context.Context, r *pushv1.IsUidOnlineRequest) (*pushv1.IsUidOnlineResponse, error) {
	m, err := s.api.UIDsOnline(ctx, uidsOf(r.GetUid(), r.GetUids()))
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &pushv1.IsUidOnlineResponse{Online: m[r.GetUid()]}
	if len(r.GetUids()) > 0 {
		resp.OnlineByUid = m
	}
	return resp, nil
}

// GetClientIdByUid implements pushv1.PushServiceServer.
func (s *Server) GetClientIdByUid(ctx context.Context, r *pushv1.GetClientIdByUidRequest) (*pushv1.GetClientIdByUidResponse, error) {
	m, err := s.api.ClientIDsByUIDs(ctx, uidsOf(r.GetUid(), r.GetUids()))
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &pushv1.GetClientIdByUidResponse{ClientIds: m[r.GetUid()]}
	if len(r.GetUids()) > 0 {
		resp.ClientIdsByUid = make(map[string]*pushv1.ClientIds, len(r.GetUids()))
		for _, u := range r.GetUids() {
			resp.ClientIdsByUid[u] = &pushv1.ClientIds{ClientIds: m[u]}
		}
	}
	return resp, nil
}

// GetUidByClientId implements pushv1.PushServiceServer.
func (s *Server) GetUidByClientId(ctx context.Context, r *pushv1.GetUidByClientIdRequest) (*pushv1.GetUidByClientIdResponse, error) {
	uid, err := s.api.UIDByClientID(ctx, r.GetClientId())
	return &pushv1.GetUidByClientIdResponse{Uid: uid}, statusOf(err)
}

// JoinGroup implements pushv1.PushServiceServer.
func (s *Server) JoinGroup(ctx context.Context, r *pushv1.JoinGroupRequest) (*pushv1.JoinGroupResponse, error) {
	return &pushv1.JoinGroupResponse{}, statusOf(s.api.JoinGroup(ctx, r.GetClientId(), r.GetGroup()))
}

// LeaveGroup implements pushv1.PushServiceServer.
func (s *Server) LeaveGroup(ctx context.Context, r *pushv1.LeaveGroupRequest) (*pushv1.LeaveGroupResponse, error) {
	return &pushv1.LeaveGroupResponse{}, statusOf(s.api.LeaveGroup(ctx, r.GetClientId(), r.GetGroup()))
}

// Ungroup implements pushv1.PushServiceServer.
func (s *Server) Ungroup(ctx context.Context, r *pushv1.UngroupRequest) (*pushv1.UngroupResponse, error) {
	n, err := s.api.Ungroup(ctx, r.GetGroup())
	return &pushv1.UngroupResponse{Removed: uint32(n)}, statusOf(err)
}

// GetGroupMembers implements pushv1.PushServiceServer.
func (s *Server) GetGroupMembers(ctx context.Context, r *pushv1.GetGroupMembersRequest) (*pushv1.GetGroupMembersResponse, error) {
	m, err := s.api.GroupMembers(ctx, r.GetGroups())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &pushv1.GetGroupMembersResponse{Groups: make(map[string]*pushv1.GroupMembers, len(m))}
	for g, gm := range m {
		resp.Groups[g] = &pushv1.GroupMembers{ClientIds: gm.ClientIDs, Uids: gm.UIDs}
	}
	return resp, nil
}

// GetClientCount implements pushv1.PushServiceServer.
func (s *Server) GetClientCount(ctx context.Context, r *pushv1.GetClientCountRequest) (*pushv1.GetClientCountResponse, error) {
	n, err := s.api.ClientCount(ctx, r.GetGroup())
	partial, err := incomplete(err)
	return &pushv1.GetClientCountResponse{Count: uint32(n), Incomplete: partial}, statusOf(err)
}

// ListClients implements pushv1.PushServiceServer.
func (s *Server) ListClients(ctx context.Context, r *pushv1.ListClientsRequest) (*pushv1.ListClientsResponse, error) {
	cs, err := s.api.Clients(ctx, r.GetGroup())
	partial, err := incomplete(err)
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &pushv1.ListClientsResponse{Incomplete: partial}
	for _, c := range cs {
		resp.Clients = append(resp.Clients, &pushv1.Client{ClientId: c.ClientID, Uid: c.UID, Groups: c.Groups, Session: string(c.Session)})
	}
	return resp, nil
}

// SetSession implements pushv1.PushServiceServer.
func (s *Server) SetSession(ctx context.Context, r *pushv1.SetSessionRequest) (*pushv1.SetSessionResponse, error) {
	return &pushv1.SetSessionResponse{}, statusOf(s.api.SetSession(ctx, r.GetClientId(), json.RawMessage(r.GetSession())))
}

// UpdateSession implements pushv1.PushServiceServer.
func (s *Server) UpdateSession(ctx context.Context, r *pushv1.UpdateSessionRequest) (*pushv1.UpdateSessionResponse, error) {
	return &pushv1.UpdateSessionResponse{}, statusOf(s.api.UpdateSession(ctx, r.GetClientId(), json.RawMessage(r.GetPatch())))
}

// GetSession implements pushv1.PushServiceServer.
func (s *Server) GetSession(ctx context.Context, r *pushv1.GetSessionRequest) (*pushv1.GetSessionResponse, error) {
	sess, err := s.api.GetSession(ctx, r.GetClientId())
	return &pushv1.GetSessionResponse{Session: string(sess)}, statusOf(err)
}
