package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pushv1 "github.com/gatewire/gatewire/proto/gatewire/push/v1"
)

// TestPushAPI drives every Push API call against a real cluster (two
// gateways, two workers, each its own process) with clients on both
// gateways, and checks the real results: who receives what, the counts,
// the directory's answers, groups, sessions, closes. It then makes a few
// calls as HTTP/JSON. The calls go to both workers' Push APIs: any worker
// answers for the whole cluster.
func TestPushAPI(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pc0 := pushClient(t, c.workers[0].pushAddr, c.pushToken)
	pc1 := pushClient(t, c.workers[1].pushAddr, c.pushToken)

	// Three clients on each gateway.
	a0, b0, d0 := c.dial(t, 0, "a0"), c.dial(t, 0, "b0"), c.dial(t, 0, "d0")
	a1, b1, d1 := c.dial(t, 1, "a1"), c.dial(t, 1, "b1"), c.dial(t, 1, "d1")
	all := []*client{a0, b0, d0, a1, b1, d1}
	// The probes startCluster dialled are gone once the count settles: the
	// cluster then holds exactly our six connections.
	paWaitCount(ctx, t, pc0, "", 6)
	paWaitCount(ctx, t, pc1, "", 6)

	// Uids: 9001 on both gateways (through the chat's bind), 9002 through
	// the chat, 9003 and "0" through BindUid; d1 stays unbound.
	a0.bind("9001")
	a1.bind("9001")
	b0.bind("9002")
	if _, err := pc1.BindUid(ctx, &pushv1.BindUidRequest{ClientId: b1.id, Uid: "9003"}); err != nil {
		t.Fatalf("BindUid(b1, 9003): %v", err)
	}
	if _, err := pc0.BindUid(ctx, &pushv1.BindUidRequest{ClientId: d0.id, Uid: "0"}); err != nil {
		t.Fatalf(`BindUid(d0, "0"): %v`, err)
	}
	paCode(t, "BindUid with an empty uid", codes.InvalidArgument, func() error {
		_, err := pc0.BindUid(ctx, &pushv1.BindUidRequest{ClientId: d1.id})
		return err
	})
	paCode(t, "BindUid of a malformed client_id", codes.InvalidArgument, func() error {
		_, err := pc0.BindUid(ctx, &pushv1.BindUidRequest{ClientId: "not-a-client-id", Uid: "9009"})
		return err
	})

	// GetUidByClientId.
	for _, tc := range []struct {
		cl   *client
		want string
	}{{a0, "9001"}, {a1, "9001"}, {b0, "9002"}, {b1, "9003"}, {d0, "0"}, {d1, ""}} {
		for i, pc := range []pushv1.PushServiceClient{pc0, pc1} {
			resp, err := pc.GetUidByClientId(ctx, &pushv1.GetUidByClientIdRequest{ClientId: tc.cl.id})
			if err != nil || resp.GetUid() != tc.want {
				t.Errorf("worker%d: GetUidByClientId(%s) = %q, %v; want %q", i, tc.cl.name, resp.GetUid(), err, tc.want)
			}
		}
	}

	// IsUidOnline, single and batched.
	for uid, want := range map[string]bool{"9001": true, "9003": true, "0": true, "9999": false} {
		resp, err := pc0.IsUidOnline(ctx, &pushv1.IsUidOnlineRequest{Uid: uid})
		if err != nil || resp.GetOnline() != want {
			t.Errorf("IsUidOnline(%q) = %v, %v; want %v", uid, resp.GetOnline(), err, want)
		}
	}
	{
		resp, err := pc1.IsUidOnline(ctx, &pushv1.IsUidOnlineRequest{Uids: []string{"9001", "9002", "9003", "0", "9999"}})
		want := map[string]bool{"9001": true, "9002": true, "9003": true, "0": true, "9999": false}
		if err != nil || !reflect.DeepEqual(resp.GetOnlineByUid(), want) {
			t.Errorf("IsUidOnline(batched) = %v, %v; want online_by_uid %v", resp.GetOnlineByUid(), err, want)
		}
	}
	paCode(t, "IsUidOnline without a uid", codes.InvalidArgument, func() error {
		_, err := pc0.IsUidOnline(ctx, &pushv1.IsUidOnlineRequest{})
		return err
	})

	// GetClientIdByUid, single and batched.
	{
		resp, err := pc0.GetClientIdByUid(ctx, &pushv1.GetClientIdByUidRequest{Uid: "9001"})
		if want := paIDs(a0, a1); err != nil || !slices.Equal(paSorted(resp.GetClientIds()), want) {
			t.Errorf("GetClientIdByUid(9001) = %v, %v; want %v", resp.GetClientIds(), err, want)
		}
		resp, err = pc1.GetClientIdByUid(ctx, &pushv1.GetClientIdByUidRequest{Uids: []string{"9001", "9002", "0", "9999"}})
		if err != nil {
			t.Fatalf("GetClientIdByUid(batched): %v", err)
		}
		got := map[string][]string{}
		for uid, ids := range resp.GetClientIdsByUid() {
			got[uid] = paSorted(ids.GetClientIds())
		}
		want := map[string][]string{"9001": paIDs(a0, a1), "9002": paIDs(b0), "0": paIDs(d0)}
		for uid, ids := range want {
			if !slices.Equal(got[uid], ids) {
				t.Errorf("GetClientIdByUid(batched)[%s] = %v, want %v", uid, got[uid], ids)
			}
		}
		if len(got["9999"]) != 0 {
			t.Errorf("GetClientIdByUid(batched)[9999] = %v, want none", got["9999"])
		}
	}

	// SendToAll to everybody: each connection gets it exactly once.
	paDelivered(t, "SendToAll(all)", 6, func() (uint32, error) {
		r, err := pc0.SendToAll(ctx, &pushv1.SendToAllRequest{Data: paData("all")})
		return r.GetDelivered(), err
	})
	paExpect(t, "all", all...)
	// SendToAll to a list.
	paDelivered(t, "SendToAll(client_ids)", 3, func() (uint32, error) {
		r, err := pc1.SendToAll(ctx, &pushv1.SendToAllRequest{Data: paData("list"), ClientIds: paIDs(a0, b1, d1)})
		return r.GetDelivered(), err
	})
	paExpect(t, "list", a0, b1, d1)
	expectNothing(t, b0, d0, a1)
	// SendToAll with exclusions: the excluded get nothing.
	paDelivered(t, "SendToAll(exclude)", 4, func() (uint32, error) {
		r, err := pc0.SendToAll(ctx, &pushv1.SendToAllRequest{Data: paData("exclude"), ExcludeClientIds: paIDs(a0, a1)})
		return r.GetDelivered(), err
	})
	paExpect(t, "exclude", b0, d0, b1, d1)
	expectNothing(t, a0, a1)
	// A list minus exclusions.
	paDelivered(t, "SendToAll(client_ids, exclude)", 2, func() (uint32, error) {
		r, err := pc1.SendToAll(ctx, &pushv1.SendToAllRequest{Data: paData("list-exclude"),
			ClientIds: paIDs(a0, b0, a1), ExcludeClientIds: paIDs(b0)})
		return r.GetDelivered(), err
	})
	paExpect(t, "list-exclude", a0, a1)
	expectNothing(t, b0, d0, b1, d1)

	// SendToClient: text and binary; other clients get nothing.
	if _, err := pc0.SendToClient(ctx, &pushv1.SendToClientRequest{ClientId: b1.id, Data: paData("one")}); err != nil {
		t.Fatalf("SendToClient(b1): %v", err)
	}
	paExpect(t, "one", b1)
	if _, err := pc1.SendToClient(ctx, &pushv1.SendToClientRequest{ClientId: d0.id, Data: []byte{0, 1, 2, 255}, Binary: true}); err != nil {
		t.Fatalf("SendToClient(d0, binary): %v", err)
	}
	if in := paRaw(t, d0); in.err != nil || in.typ != websocket.MessageBinary || !bytes.Equal(in.data, []byte{0, 1, 2, 255}) {
		t.Fatalf("d0: got %v %q (%v), want the binary frame 00 01 02 ff", in.typ, in.data, in.err)
	}
	expectNothing(t, a0, b0, a1, d1)

	// SendToUid: several uids, uid "0".
	paDelivered(t, "SendToUid(9001, 9002, 9999)", 3, func() (uint32, error) {
		r, err := pc0.SendToUid(ctx, &pushv1.SendToUidRequest{Uids: []string{"9001", "9002", "9999"}, Data: paData("uids")})
		return r.GetDelivered(), err
	})
	paExpect(t, "uids", a0, a1, b0)
	paDelivered(t, `SendToUid("0")`, 1, func() (uint32, error) {
		r, err := pc1.SendToUid(ctx, &pushv1.SendToUidRequest{Uids: []string{"0"}, Data: paData("uid0")})
		return r.GetDelivered(), err
	})
	paExpect(t, "uid0", d0)
	paDelivered(t, "SendToUid(nobody)", 0, func() (uint32, error) {
		r, err := pc1.SendToUid(ctx, &pushv1.SendToUidRequest{Uids: []string{"9999"}, Data: paData("nobody")})
		return r.GetDelivered(), err
	})
	expectNothing(t, all...)

	// Groups: g1 = {a0, b1, d1} across both gateways, g2 = {a0, b0}, and
	// group "0" = {d0}.
	for _, j := range []struct {
		cl    *client
		group string
	}{{a0, "g1"}, {b1, "g1"}, {d1, "g1"}, {a0, "g2"}, {b0, "g2"}, {d0, "0"}, {a0, "g1"} /* again: no-op */} {
		if _, err := pc0.JoinGroup(ctx, &pushv1.JoinGroupRequest{ClientId: j.cl.id, Group: j.group}); err != nil {
			t.Fatalf("JoinGroup(%s, %q): %v", j.cl.name, j.group, err)
		}
	}
	paCode(t, "JoinGroup with an empty group", codes.InvalidArgument, func() error {
		_, err := pc0.JoinGroup(ctx, &pushv1.JoinGroupRequest{ClientId: a0.id})
		return err
	})
	paCheckMembers(ctx, t, pc1, []string{"g1", "g2", "0", "g-none"}, map[string]paMembers{
		"g1": {paIDs(a0, b1, d1), []string{"9001", "9003"}},
		"g2": {paIDs(a0, b0), []string{"9001", "9002"}},
		"0":  {paIDs(d0), []string{"0"}},
	})
	for group, want := range map[string]uint32{"": 6, "g1": 3, "g2": 2, "0": 1, "g-none": 0} {
		resp, err := pc1.GetClientCount(ctx, &pushv1.GetClientCountRequest{Group: group})
		if err != nil || resp.GetCount() != want || resp.GetIncomplete() {
			t.Errorf("GetClientCount(%q) = %v, %v; want %d, complete", group, resp, err, want)
		}
	}
	// A member of both groups gets it once; the excluded member nothing.
	paDelivered(t, "SendToGroup(g1, g2 - d1)", 3, func() (uint32, error) {
		r, err := pc0.SendToGroup(ctx, &pushv1.SendToGroupRequest{Groups: []string{"g1", "g2"}, Data: paData("groups"),
			ExcludeClientIds: paIDs(d1)})
		return r.GetDelivered(), err
	})
	paExpect(t, "groups", a0, b1, b0)
	paDelivered(t, `SendToGroup("0")`, 1, func() (uint32, error) {
		r, err := pc1.SendToGroup(ctx, &pushv1.SendToGroupRequest{Groups: []string{"0"}, Data: paData("group0")})
		return r.GetDelivered(), err
	})
	paExpect(t, "group0", d0)
	paDelivered(t, "SendToGroup(g-none)", 0, func() (uint32, error) {
		r, err := pc1.SendToGroup(ctx, &pushv1.SendToGroupRequest{Groups: []string{"g-none"}, Data: paData("none")})
		return r.GetDelivered(), err
	})
	expectNothing(t, all...)

	// Sessions: set, get (through the other worker), merge patch.
	paSetSession(ctx, t, pc0, a1, `{"role":"admin","n":1}`)
	paCheckSession(ctx, t, pc1, a1, `{"role":"admin","n":1}`)
	if _, err := pc1.UpdateSession(ctx, &pushv1.UpdateSessionRequest{ClientId: a1.id, Patch: `{"n":null,"x":{"y":2}}`}); err != nil {
		t.Fatalf("UpdateSession(a1): %v", err)
	}
	paCheckSession(ctx, t, pc0, a1, `{"role":"admin","x":{"y":2}}`)
	// Twenty concurrent UpdateSessions of different fields, through both
	// workers: none is lost.
	var wg sync.WaitGroup
	wantB0 := map[string]any{}
	for i := range 20 {
		field := fmt.Sprintf("f%02d", i)
		wantB0[field] = float64(i)
		pc := []pushv1.PushServiceClient{pc0, pc1}[i%2]
		wg.Go(func() {
			patch := fmt.Sprintf(`{%q:%d}`, field, i)
			if _, err := pc.UpdateSession(ctx, &pushv1.UpdateSessionRequest{ClientId: b0.id, Patch: patch}); err != nil {
				t.Errorf("UpdateSession(b0, %s): %v", patch, err)
			}
		})
	}
	wg.Wait()
	wantB0JSON, _ := json.Marshal(wantB0)
	paCheckSession(ctx, t, pc1, b0, string(wantB0JSON))
	// Clearing, and what is not a session.
	paSetSession(ctx, t, pc0, d0, `{"k":"v"}`)
	paCheckSession(ctx, t, pc0, d0, `{"k":"v"}`)
	paSetSession(ctx, t, pc1, d0, ``)
	paCheckSession(ctx, t, pc0, d0, ``)
	for _, bad := range []string{`[1,2]`, `not json`, `"s"`} {
		paCode(t, "SetSession("+bad+")", codes.InvalidArgument, func() error {
			_, err := pc0.SetSession(ctx, &pushv1.SetSessionRequest{ClientId: a1.id, Session: bad})
			return err
		})
		paCode(t, "UpdateSession("+bad+")", codes.InvalidArgument, func() error {
			_, err := pc0.UpdateSession(ctx, &pushv1.UpdateSessionRequest{ClientId: a1.id, Patch: bad})
			return err
		})
	}
	paCheckSession(ctx, t, pc1, a1, `{"role":"admin","x":{"y":2}}`) // untouched by the refused calls

	// ListClients: uids, groups, sessions, for the cluster and for a group.
	paCheckList(ctx, t, pc0, "", map[string]paClient{
		a0.id: {"9001", []string{"g1", "g2"}, ""},
		b0.id: {"9002", []string{"g2"}, string(wantB0JSON)},
		d0.id: {"0", []string{"0"}, ""},
		a1.id: {"9001", nil, `{"role":"admin","x":{"y":2}}`},
		b1.id: {"9003", []string{"g1"}, ""},
		d1.id: {"", []string{"g1"}, ""},
	})
	paCheckList(ctx, t, pc1, "g2", map[string]paClient{
		a0.id: {"9001", []string{"g1", "g2"}, ""},
		b0.id: {"9002", []string{"g2"}, string(wantB0JSON)},
	})

	// LeaveGroup, and again (a no-op); Ungroup counts what it removed.
	for range 2 {
		if _, err := pc1.LeaveGroup(ctx, &pushv1.LeaveGroupRequest{ClientId: b1.id, Group: "g1"}); err != nil {
			t.Fatalf("LeaveGroup(b1, g1): %v", err)
		}
	}
	paCheckMembers(ctx, t, pc0, []string{"g1"}, map[string]paMembers{"g1": {paIDs(a0, d1), []string{"9001"}}})
	paRemoved(t, "Ungroup(g2)", 2, func() (uint32, error) {
		r, err := pc0.Ungroup(ctx, &pushv1.UngroupRequest{Group: "g2"})
		return r.GetRemoved(), err
	})
	paRemoved(t, "Ungroup(g2) again", 0, func() (uint32, error) {
		r, err := pc1.Ungroup(ctx, &pushv1.UngroupRequest{Group: "g2"})
		return r.GetRemoved(), err
	})
	paCheckMembers(ctx, t, pc1, []string{"g1", "g2"}, map[string]paMembers{"g1": {paIDs(a0, d1), []string{"9001"}}})
	paDelivered(t, "SendToGroup(g2) after Ungroup", 0, func() (uint32, error) {
		r, err := pc1.SendToGroup(ctx, &pushv1.SendToGroupRequest{Groups: []string{"g2"}, Data: paData("ungrouped")})
		return r.GetDelivered(), err
	})

	// UnbindUid: the wrong uid is refused, the right one unbinds.
	paCode(t, "UnbindUid(b1, wrong uid)", codes.FailedPrecondition, func() error {
		_, err := pc0.UnbindUid(ctx, &pushv1.UnbindUidRequest{ClientId: b1.id, Uid: "9002"})
		return err
	})
	for range 2 { // the second is a no-op
		if _, err := pc0.UnbindUid(ctx, &pushv1.UnbindUidRequest{ClientId: b1.id, Uid: "9003"}); err != nil {
			t.Fatalf("UnbindUid(b1, 9003): %v", err)
		}
	}
	if resp, err := pc1.GetUidByClientId(ctx, &pushv1.GetUidByClientIdRequest{ClientId: b1.id}); err != nil || resp.GetUid() != "" {
		t.Errorf("GetUidByClientId(b1) after UnbindUid = %q, %v; want \"\"", resp.GetUid(), err)
	}
	if resp, err := pc1.IsUidOnline(ctx, &pushv1.IsUidOnlineRequest{Uid: "9003"}); err != nil || resp.GetOnline() {
		t.Errorf("IsUidOnline(9003) after UnbindUid = %v, %v; want false", resp.GetOnline(), err)
	}

	// IsOnline.
	for _, cl := range all {
		if resp, err := pc0.IsOnline(ctx, &pushv1.IsOnlineRequest{ClientId: cl.id}); err != nil || !resp.GetOnline() {
			t.Errorf("IsOnline(%s) = %v, %v; want true", cl.name, resp.GetOnline(), err)
		}
	}

	// d1 (member of g1) disconnects: counts, membership and calls follow.
	d1.close()
	paWaitCount(ctx, t, pc0, "", 5)
	paWaitCount(ctx, t, pc1, "g1", 1)
	paCheckMembers(ctx, t, pc1, []string{"g1"}, map[string]paMembers{"g1": {paIDs(a0), []string{"9001"}}})
	if resp, err := pc1.IsOnline(ctx, &pushv1.IsOnlineRequest{ClientId: d1.id}); err != nil || resp.GetOnline() {
		t.Errorf("IsOnline(d1) after its close = %v, %v; want false", resp.GetOnline(), err)
	}
	paCode(t, "SendToClient(closed d1)", codes.NotFound, func() error {
		_, err := pc0.SendToClient(ctx, &pushv1.SendToClientRequest{ClientId: d1.id, Data: paData("late")})
		return err
	})
	paCode(t, "JoinGroup(closed d1)", codes.NotFound, func() error {
		_, err := pc0.JoinGroup(ctx, &pushv1.JoinGroupRequest{ClientId: d1.id, Group: "g1"})
		return err
	})
	paCode(t, "GetSession(closed d1)", codes.NotFound, func() error {
		_, err := pc1.GetSession(ctx, &pushv1.GetSessionRequest{ClientId: d1.id})
		return err
	})
	paCode(t, "CloseClient(closed d1)", codes.NotFound, func() error {
		_, err := pc1.CloseClient(ctx, &pushv1.CloseClientRequest{ClientId: d1.id})
		return err
	})

	// CloseClient with data: the frame, then a normal close.
	if _, err := pc0.CloseClient(ctx, &pushv1.CloseClientRequest{ClientId: a1.id, Data: paData("bye")}); err != nil {
		t.Fatalf("CloseClient(a1, data): %v", err)
	}
	paExpect(t, "bye", a1)
	if in := paRaw(t, a1); in.err == nil || websocket.CloseStatus(in.err) != websocket.StatusNormalClosure {
		t.Errorf("a1 after CloseClient: got frame %q / error %v, want a close with status 1000", in.data, in.err)
	}
	paWaitCount(ctx, t, pc1, "", 4)
	// The gateway forgets a1 before it unbinds it in Redis, and the
	// worker's lookups hear of the unbind by pub/sub: the lookup follows
	// the count within moments, not in the same instant.
	if err := retryUntil(ctx, 5*time.Second, 20*time.Millisecond, func() error {
		resp, err := pc1.GetClientIdByUid(ctx, &pushv1.GetClientIdByUidRequest{Uid: "9001"})
		if err != nil || !slices.Equal(resp.GetClientIds(), paIDs(a0)) {
			return fmt.Errorf("got %v, %v", resp.GetClientIds(), err)
		}
		return nil
	}); err != nil {
		t.Errorf("GetClientIdByUid(9001) after a1 closed: %v; want [a0]", err)
	}
	// CloseClient with destroy: the connection drops without a close handshake.
	if _, err := pc1.CloseClient(ctx, &pushv1.CloseClientRequest{ClientId: b1.id, Data: paData("ignored"), Destroy: true}); err != nil {
		t.Fatalf("CloseClient(b1, destroy): %v", err)
	}
	for {
		in := paRaw(t, b1)
		if in.err == nil {
			// data is ignored on destroy; a frame would be a bug.
			t.Errorf("b1: got %q after CloseClient(destroy), want the connection dropped", in.data)
			continue
		}
		if st := websocket.CloseStatus(in.err); st != -1 {
			t.Errorf("b1 after CloseClient(destroy): connection ended with close status %d, want no close frame (%v)", st, in.err)
		}
		break
	}
	paWaitCount(ctx, t, pc0, "", 3)
	for _, cl := range []*client{a1, b1} {
		if resp, err := pc0.IsOnline(ctx, &pushv1.IsOnlineRequest{ClientId: cl.id}); err != nil || resp.GetOnline() {
			t.Errorf("IsOnline(%s) after CloseClient = %v, %v; want false", cl.name, resp.GetOnline(), err)
		}
	}

	// HTTP/JSON on worker1's Push API.
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	base := "http://" + c.workers[1].httpAddr + "/v1/"
	{
		body := fmt.Sprintf(`{"uids":["9001"],"data":%q}`, base64.StdEncoding.EncodeToString(paData("http")))
		var resp pushv1.SendToUidResponse
		paHTTP(t, hc, base+"SendToUid", c.pushToken, body, http.StatusOK, &resp)
		if resp.GetDelivered() != 1 {
			t.Errorf("HTTP SendToUid(9001): delivered %d, want 1", resp.GetDelivered())
		}
		paExpect(t, "http", a0)
	}
	{
		var resp pushv1.IsUidOnlineResponse
		paHTTP(t, hc, base+"IsUidOnline", c.pushToken, `{"uid":"9001","uids":["9002","9003"]}`, http.StatusOK, &resp)
		m := resp.GetOnlineByUid()
		if online9003, ok := m["9003"]; !resp.GetOnline() || !m["9002"] || !ok || online9003 {
			t.Errorf("HTTP IsUidOnline = %v, want online, and online_by_uid 9002 true and 9003 false", &resp)
		}
	}
	{
		var resp pushv1.GetClientCountResponse
		paHTTP(t, hc, base+"GetClientCount", c.pushToken, `{}`, http.StatusOK, &resp)
		if resp.GetCount() != 3 || resp.GetIncomplete() {
			t.Errorf("HTTP GetClientCount = %v, want 3, complete", &resp)
		}
	}
	for _, token := range []string{"", "not-the-token"} {
		code := paHTTP(t, hc, base+"GetClientCount", token, `{}`, http.StatusUnauthorized, nil)
		if code != "UNAUTHENTICATED" {
			t.Errorf("HTTP GetClientCount with token %q: code %q, want UNAUTHENTICATED", token, code)
		}
	}
	{
		body := fmt.Sprintf(`{"client_id":%q,"data":%q}`, d1.id, base64.StdEncoding.EncodeToString(paData("late")))
		if code := paHTTP(t, hc, base+"SendToClient", c.pushToken, body, http.StatusNotFound, nil); code != "NOT_FOUND" {
			t.Errorf(`HTTP SendToClient(closed d1): code %q, want "NOT_FOUND"`, code)
		}
	}

	expectNothing(t, a0, b0, d0)
}

// paData is the JSON text frame the test pushes, tagged n.
func paData(n string) []byte { return fmt.Appendf(nil, `{"type":"pa","n":%q}`, n) }

// paExpect checks that each client's next frame is the push tagged n.
func paExpect(t *testing.T, n string, clients ...*client) {
	t.Helper()
	for _, cl := range clients {
		if f := cl.expect("pa"); f.str("n") != n {
			t.Fatalf("%s: got %s, want the push %q", cl.name, f.raw, n)
		}
	}
}

// paRaw returns the client's next read result, frame or error.
func paRaw(t *testing.T, cl *client) inbound {
	t.Helper()
	select {
	case in := <-cl.in:
		return in
	case <-time.After(frameTimeout):
		t.Fatalf("%s: nothing read within %v", cl.name, frameTimeout)
		return inbound{}
	}
}

// paIDs returns the clients' client_ids, sorted.
func paIDs(clients ...*client) []string {
	ids := make([]string, len(clients))
	for i, cl := range clients {
		ids[i] = cl.id
	}
	return paSorted(ids)
}

func paSorted(xs []string) []string {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs
}

// paCode checks that call fails with code.
func paCode(t *testing.T, what string, want codes.Code, call func() error) {
	t.Helper()
	if err := call(); status.Code(err) != want {
		t.Errorf("%s: %v, want code %v", what, err, want)
	}
}

// paDelivered checks a send's delivered count.
func paDelivered(t *testing.T, what string, want uint32, call func() (uint32, error)) {
	t.Helper()
	if n, err := call(); err != nil || n != want {
		t.Fatalf("%s: delivered %d, %v; want %d", what, n, err, want)
	}
}

// paRemoved checks an Ungroup's removed count.
func paRemoved(t *testing.T, what string, want uint32, call func() (uint32, error)) {
	t.Helper()
	if n, err := call(); err != nil || n != want {
		t.Errorf("%s: removed %d, %v; want %d", what, n, err, want)
	}
}

// paWaitCount polls GetClientCount until it is want and complete.
func paWaitCount(ctx context.Context, t *testing.T, pc pushv1.PushServiceClient, group string, want uint32) {
	t.Helper()
	err := retryUntil(ctx, 10*time.Second, 50*time.Millisecond, func() error {
		resp, err := pc.GetClientCount(ctx, &pushv1.GetClientCountRequest{Group: group})
		if err != nil {
			return err
		}
		if resp.GetCount() != want || resp.GetIncomplete() {
			return fmt.Errorf("count %d (incomplete %v)", resp.GetCount(), resp.GetIncomplete())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("GetClientCount(%q): %v, want %d", group, err, want)
	}
}

// paMembers is a group's expected members, both lists sorted.
type paMembers struct{ ids, uids []string }

// paCheckMembers checks GetGroupMembers: exactly the groups of want, with
// their members and uids.
func paCheckMembers(ctx context.Context, t *testing.T, pc pushv1.PushServiceClient, groups []string, want map[string]paMembers) {
	t.Helper()
	resp, err := pc.GetGroupMembers(ctx, &pushv1.GetGroupMembersRequest{Groups: groups})
	if err != nil {
		t.Fatalf("GetGroupMembers(%q): %v", groups, err)
	}
	got := map[string]paMembers{}
	for g, m := range resp.GetGroups() {
		got[g] = paMembers{paSorted(m.GetClientIds()), paSorted(m.GetUids())}
	}
	same := len(got) == len(want)
	for g, m := range want {
		gm, ok := got[g]
		same = same && ok && slices.Equal(gm.ids, m.ids) && slices.Equal(gm.uids, m.uids)
	}
	if !same {
		t.Errorf("GetGroupMembers(%q) = %+v, want %+v", groups, got, want)
	}
}

// paSetSession sets a session, failing t on error.
func paSetSession(ctx context.Context, t *testing.T, pc pushv1.PushServiceClient, cl *client, session string) {
	t.Helper()
	if _, err := pc.SetSession(ctx, &pushv1.SetSessionRequest{ClientId: cl.id, Session: session}); err != nil {
		t.Fatalf("SetSession(%s, %s): %v", cl.name, session, err)
	}
}

// paCheckSession checks that GetSession returns want ("" for none), as JSON.
func paCheckSession(ctx context.Context, t *testing.T, pc pushv1.PushServiceClient, cl *client, want string) {
	t.Helper()
	resp, err := pc.GetSession(ctx, &pushv1.GetSessionRequest{ClientId: cl.id})
	if err != nil {
		t.Fatalf("GetSession(%s): %v", cl.name, err)
	}
	if !paSameJSON(resp.GetSession(), want) {
		t.Errorf("GetSession(%s) = %s, want %s", cl.name, resp.GetSession(), want)
	}
}

// paSameJSON compares two JSON texts by value; "" is only equal to "".
func paSameJSON(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// paClient is what ListClients must say of one connection.
type paClient struct {
	uid     string
	groups  []string // sorted
	session string   // JSON, "" when none
}

// paCheckList checks that ListClients lists exactly want.
func paCheckList(ctx context.Context, t *testing.T, pc pushv1.PushServiceClient, group string, want map[string]paClient) {
	t.Helper()
	resp, err := pc.ListClients(ctx, &pushv1.ListClientsRequest{Group: group})
	if err != nil || resp.GetIncomplete() {
		t.Fatalf("ListClients(%q): %v, %v; want a complete list", group, resp, err)
	}
	if len(resp.GetClients()) != len(want) {
		t.Errorf("ListClients(%q) lists %d clients, want %d: %v", group, len(resp.GetClients()), len(want), resp.GetClients())
	}
	for _, cl := range resp.GetClients() {
		w, ok := want[cl.GetClientId()]
		if !ok {
			t.Errorf("ListClients(%q) lists %s, which it should not", group, cl.GetClientId())
			continue
		}
		if groups := paSorted(cl.GetGroups()); cl.GetUid() != w.uid || !slices.Equal(groups, w.groups) ||
			!paSameJSON(cl.GetSession(), w.session) {
			t.Errorf("ListClients(%q): %s has uid %q, groups %v, session %q; want %q, %v, %q",
				group, cl.GetClientId(), cl.GetUid(), groups, cl.GetSession(), w.uid, w.groups, w.session)
		}
	}
}

// paHTTP posts body to url with token ("" sends none), checks the HTTP
// status, decodes a successful answer into resp (when not nil) and returns
// the "code" of an error answer.
func paHTTP(t *testing.T, hc *http.Client, url, token, body string, wantStatus int, resp proto.Message) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	r, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer r.Body.Close()
	out, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", url, err)
	}
	if r.StatusCode != wantStatus {
		t.Fatalf("POST %s %s: status %d, body %s; want status %d", url, body, r.StatusCode, out, wantStatus)
	}
	if wantStatus == http.StatusOK {
		if resp != nil {
			if err := protojson.Unmarshal(out, resp); err != nil {
				t.Fatalf("POST %s: answer %s: %v", url, out, err)
			}
		}
		return ""
	}
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("POST %s: error answer %s is not JSON: %v", url, out, err)
	}
	if e.Message == "" {
		t.Errorf("POST %s: error answer %s has no message", url, out)
	}
	return e.Code
}
