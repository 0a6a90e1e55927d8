package push_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gatewire/gatewire/internal/push"
	"github.com/gatewire/gatewire/internal/worker"
	pushv1 "github.com/gatewire/gatewire/proto/gatewire/push/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	cid1 = "00000000000000a10000000000000001"
	cid2 = "00000000000000b20000000000000002"
)

// rpc is one Push API call: how to make it, the worker.API call it must
// turn into, and the answer it must give when the API succeeds with
// fakeAPI's results.
type rpc struct {
	name     string
	call     func(context.Context, pushv1.PushServiceClient) (proto.Message, error)
	wantCall apiCall
	wantResp proto.Message
}

// rpcs covers every method of the Push API.
var rpcs = []rpc{
	{
		name: "SendToClient",
		call: func(ctx context.Context, c pushv1.PushServiceClient) (proto.Message, error) {
			return c.SendToClient(ctx, &pushv1.SendToClientRequest{ClientId: cid1, Data: []byte("hello"), Binary: true})
		},
		wantCall: apiCall{"SendToClient", []any{cid1, []byte("hello"), true}},
		wantResp: &pushv1.SendToClientResponse{},
	},
	{
		name: "SendToClientText",
		call: func(ctx context.Context, c pushv1.PushServiceClient) (proto.Message, error) {
			return c.SendToClient(ctx, &pushv1.SendToClientRequest{ClientId: cid2, Data: []byte(`{"type":"say"}`)})
		},
		wantCall: apiCall{"SendToClient", []any{cid2, []byte(`{"type":"say"}`), false}},
		wantResp: &pushv1.SendToClientResponse{},
	},
	{
		name: "SendToUid",
		call: func(ctx context.Context, c pushv1.PushServiceClient) (proto.Message, error) {
			return c.SendToUid(ctx, &pushv1.SendToUidRequest{Uids: []string{"alice", "0", "bob"}, Data: []byte("hi"), Binary: true})
		},
		wantCall: apiCall{"SendToUID", []any{[]string{"alice", "0", "bob"}, []byte("hi"), true}},
		wantResp: &pushv1.SendToUidResponse{Delivered: fakeDelivered},
	},
	{
		name: "IsUidOnline",
		call: func(ctx context.Context, c pushv1.PushServiceClient) (proto.Message, error) {
			return c.IsUidOnline(ctx, &pushv1.IsUidOnlineRequest{Uid: "alice"})
		},
		wantCall: apiCall{"UIDsOnline", []any{[]string{"alice"}}},
		wantResp: &pushv1.IsUidOnlineResponse{Online: true},
	},
	{
		name: "BindUid",
		call: func(ctx context.Context, c pushv1.PushServiceClient) (proto.Message, error) {
			return c.BindUid(ctx, &pushv1.BindUidRequest{ClientId: cid1, Uid: "alice"})
		},
		wantCall: apiCall{"BindUID", []any{cid1, "alice"}},
		wantResp: &pushv1.BindUidResponse{},
	},
	{
		name: "UnbindUid",
		call: func(ctx context.Context, c pushv1.PushServiceClient) (proto.Message, error) {
			return c.UnbindUid(ctx, &pushv1.UnbindUidRequest{ClientId: cid2, Uid: "bob"})
		},
		wantCall: apiCall{"UnbindUID", []any{cid2, "bob"}},
		wantResp: &pushv1.UnbindUidResponse{},
	},
	{
		name: "GetClientIdByUid",
		call: func(ctx context.Context, c pushv1.PushServiceClient) (proto.Message, error) {
			return c.GetClientIdByUid(ctx, &pushv1.GetClientIdByUidRequest{Uid: "alice"})
		},
		wantCall: apiCall{"ClientIDsByUIDs", []any{[]string{"alice"}}},
		wantResp: &pushv1.GetClientIdByUidResponse{ClientIds: fakeClientIDs},
	},
	{
		name: "GetUidByClientId",
		call: func(ctx context.Context, c pushv1.PushServiceClient) (proto.Message, error) {
			return c.GetUidByClientId(ctx, &pushv1.GetUidByClientIdRequest{ClientId: cid1})
		},
		wantCall: apiCall{"UIDByClientID", []any{cid1}},
		wantResp: &pushv1.GetUidByClientIdResponse{Uid: fakeUID},
	},
	{
		name: "CloseClient",
		call: func(ctx context.Context, c pushv1.PushServiceClient) (proto.Message, error) {
			return c.CloseClient(ctx, &pushv1.CloseClientRequest{ClientId: cid2, Data: []byte("bye")})
		},
		wantCall: apiCall{"CloseClient", []any{cid2, []byte("bye")}},
		wantResp: &pushv1.CloseClientResponse{},
	},
}

// TestPassThrough checks that every RPC makes exactly the worker.API call
// its request asks for, with its arguments, and answers with its results.
func TestPassThrough(t *testing.T) {
	api := &fakeAPI{}
	client := newClient(t, api)
	for _, r := range rpcs {
		t.Run(r.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			api.reset(nil)
			resp, err := r.call(ctx, client)
			if err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
			if calls := api.taken(); len(calls) != 1 || !reflect.DeepEqual(calls[0], r.wantCall) {
				t.Errorf("API calls = %v, want [%v]", calls, r.wantCall)
			}
			if !proto.Equal(resp, r.wantResp) {
				t.Errorf("response = %v, want %v", resp, r.wantResp)
			}
		})
	}
}

// TestSendToUidDelivered checks that SendToUid answers with the number of
// connections the API reached, zero included.
func TestSendToUidDelivered(t *testing.T) {
	api := &fakeAPI{}
	client := newClient(t, api)
	for _, n := range []int{0, 1, 7, 100000} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		api.reset(nil)
		api.mu.Lock()
		api.delivered = n
		api.mu.Unlock()
		resp, err := client.SendToUid(ctx, &pushv1.SendToUidRequest{Uids: []string{"alice"}, Data: []byte("x")})
		cancel()
		if err != nil || resp.GetDelivered() != uint32(n) {
			t.Errorf("SendToUid when the API reached %d connections = %v, %v; want delivered %d", n, resp, err, n)
		}
	}
}

// TestErrorCodes checks that every RPC maps each worker.API error onto its
// gRPC status code, wrapped errors included.
func TestErrorCodes(t *testing.T) {
	errs := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"InvalidArgument", worker.ErrInvalidArgument, codes.InvalidArgument},
		{"NotFound", worker.ErrNotFound, codes.NotFound},
		{"Conflict", worker.ErrConflict, codes.FailedPrecondition},
		{"Unavailable", worker.ErrUnavailable, codes.Unavailable},
		{"WrappedInvalidArgument", fmt.Errorf("bind %s: %w", cid1, worker.ErrInvalidArgument), codes.InvalidArgument},
		{"WrappedNotFound", fmt.Errorf("send to %s: %w", cid1, worker.ErrNotFound), codes.NotFound},
		{"WrappedConflict", fmt.Errorf("unbind: %w", fmt.Errorf("uid bob: %w", worker.ErrConflict)), codes.FailedPrecondition},
		{"WrappedUnavailable", fmt.Errorf("gateway 00000000000000a1: %w", worker.ErrUnavailable), codes.Unavailable},
		{"JoinedUnavailable", errors.Join(errors.New("directory down"), worker.ErrUnavailable), codes.Unavailable},
		{"DeadlineExceeded", fmt.Errorf("ask gateway: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"Canceled", fmt.Errorf("ask gateway: %w", context.Canceled), codes.Canceled},
		{"Unknown", errors.New("disk on fire"), codes.Internal},
		{"WrappedUnknown", fmt.Errorf("send: %w", errors.New("disk on fire")), codes.Internal},
	}
	api := &fakeAPI{}
	client := newClient(t, api)
	for _, r := range rpcs {
		for _, e := range errs {
			t.Run(r.name+"/"+e.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				api.reset(e.err)
				_, err := r.call(ctx, client)
				if got := status.Code(err); got != e.want {
					t.Errorf("%s when the API fails with %q: %v, want code %v", r.name, e.err, err, e.want)
				}
				if calls := api.taken(); len(calls) != 1 || calls[0].method != r.wantCall.method {
					t.Errorf("API calls = %v, want one %s", calls, r.wantCall.method)
				}
			})
		}
	}
}

// Results fakeAPI returns.
const (
	fakeDelivered = 3
	fakeUID       = "alice"
)

var fakeClientIDs = []string{cid1, cid2}

// apiCall records one worker.API call.
type apiCall struct {
	method string
	args   []any
}

// fakeAPI is a worker.API that records its calls and answers every one with
// fixed results and err (nil unless reset says otherwise), as an incomplete
// cluster-wide answer does.
type fakeAPI struct {
	mu        sync.Mutex
	calls     []apiCall
	err       error
	delivered int
}

var _ worker.API = (*fakeAPI)(nil)

// reset forgets the calls so far and makes every call fail with err.
func (f *fakeAPI) reset(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.err, f.delivered = nil, err, fakeDelivered
}

// taken returns the calls since the last reset.
func (f *fakeAPI) taken() []apiCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// last returns the latest call since the last reset ("" when none).
func (f *fakeAPI) last() (string, []any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return "", nil
	}
	c := f.calls[len(f.calls)-1]
	return c.method, c.args
}

func (f *fakeAPI) record(method string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, apiCall{method, args})
	return f.err
}

func (f *fakeAPI) SendToClient(_ context.Context, id string, data []byte, binary bool) error {
	return f.record("SendToClient", id, data, binary)
}

func (f *fakeAPI) SendToUID(_ context.Context, uids []string, data []byte, binary bool) (int, error) {
	err := f.record("SendToUID", uids, data, binary)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delivered, err
}

func (f *fakeAPI) IsUIDOnline(_ context.Context, uid string) (bool, error) {
	return true, f.record("IsUIDOnline", uid)
}

func (f *fakeAPI) BindUID(_ context.Context, id, uid string) error {
	return f.record("BindUID", id, uid)
}

func (f *fakeAPI) UnbindUID(_ context.Context, id, uid string) error {
	return f.record("UnbindUID", id, uid)
}

func (f *fakeAPI) ClientIDsByUID(_ context.Context, uid string) ([]string, error) {
	return fakeClientIDs, f.record("ClientIDsByUID", uid)
}

func (f *fakeAPI) UIDByClientID(_ context.Context, id string) (string, error) {
	return fakeUID, f.record("UIDByClientID", id)
}

func (f *fakeAPI) CloseClient(_ context.Context, id string, data []byte) error {
	return f.record("CloseClient", id, data)
}

func (f *fakeAPI) SendToAll(_ context.Context, data []byte, binary bool, ids, exclude []string) (int, error) {
	return 4, f.record("SendToAll", data, binary, ids, exclude)
}

func (f *fakeAPI) Post(_ context.Context, ids []string, data []byte, binary bool) error {
	return f.record("Post", ids, data, binary)
}

func (f *fakeAPI) SendToGroup(_ context.Context, groups []string, data []byte, binary bool, exclude []string) (int, error) {
	return 3, f.record("SendToGroup", groups, data, binary, exclude)
}

func (f *fakeAPI) DestroyClient(_ context.Context, id string) error {
	return f.record("DestroyClient", id)
}

func (f *fakeAPI) IsOnline(_ context.Context, id string) (bool, error) {
	return true, f.record("IsOnline", id)
}

func (f *fakeAPI) UIDsOnline(_ context.Context, uids []string) (map[string]bool, error) {
	m := make(map[string]bool, len(uids))
	for _, u := range uids {
		m[u] = u == fakeUID
	}
	return m, f.record("UIDsOnline", uids)
}

func (f *fakeAPI) ClientIDsByUIDs(_ context.Context, uids []string) (map[string][]string, error) {
	m := make(map[string][]string)
	for _, u := range uids {
		if u == fakeUID {
			m[u] = fakeClientIDs
		}
	}
	return m, f.record("ClientIDsByUIDs", uids)
}

func (f *fakeAPI) JoinGroup(_ context.Context, id, group string) error {
	return f.record("JoinGroup", id, group)
}

func (f *fakeAPI) LeaveGroup(_ context.Context, id, group string) error {
	return f.record("LeaveGroup", id, group)
}

func (f *fakeAPI) Ungroup(_ context.Context, group string) (int, error) {
	return 5, f.record("Ungroup", group)
}

func (f *fakeAPI) GroupMembers(_ context.Context, groups []string) (map[string]worker.GroupMembers, error) {
	return map[string]worker.GroupMembers{"g": {ClientIDs: []string{cid1}, UIDs: []string{fakeUID}}}, f.record("GroupMembers", groups)
}

func (f *fakeAPI) ClientCount(_ context.Context, group string) (int, error) {
	return 7, f.record("ClientCount", group)
}

func (f *fakeAPI) Clients(_ context.Context, group string) ([]worker.ClientInfo, error) {
	return []worker.ClientInfo{{ClientID: cid1, UID: fakeUID, Groups: []string{"g"}, Session: json.RawMessage(`{"a":1}`)}},
		f.record("Clients", group)
}

func (f *fakeAPI) SetSession(_ context.Context, id string, s json.RawMessage) error {
	return f.record("SetSession", id, string(s))
}

func (f *fakeAPI) UpdateSession(_ context.Context, id string, p json.RawMessage) error {
	return f.record("UpdateSession", id, string(p))
}

func (f *fakeAPI) GetSession(_ context.Context, id string) (json.RawMessage, error) {
	return json.RawMessage(`{"a":1}`), f.record("GetSession", id)
}

// newClient serves push.NewServer(api) on a loopback port until the test
// ends and returns a client of it.
func newClient(t *testing.T, api worker.API) pushv1.PushServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pushv1.RegisterPushServiceServer(gs, push.NewServer(api))
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		gs.Stop()
		<-done
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		gs.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pushv1.NewPushServiceClient(cc)
}
