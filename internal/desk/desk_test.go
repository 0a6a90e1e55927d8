package desk

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeAPI is an in-memory worker.API: connections with their uid and
// groups; it records the frames each connection got.
type fakeAPI struct {
	worker.API // nil: calls the desk never makes panic

	mu     sync.Mutex
	conns  map[string]string          // client_id → uid
	groups map[string]map[string]bool // group → client_ids
	frames map[string][]string        // client_id → frames, in order
	fails  []string
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{conns: map[string]string{}, groups: map[string]map[string]bool{}, frames: map[string][]string{}}
}

func (f *fakeAPI) deadline(ctx context.Context, call string) {
	if _, ok := ctx.Deadline(); !ok {
		f.fails = append(f.fails, call+" without a deadline")
	}
}

func (f *fakeAPI) connect(id, uid string) *worker.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns[id] = uid
	return &worker.Client{ID: id, UID: uid}
}

func (f *fakeAPI) disconnect(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, id)
	for _, members := range f.groups {
		delete(members, id)
	}
}

func (f *fakeAPI) SendToClient(ctx context.Context, id string, data []byte, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline(ctx, "SendToClient")
	if _, ok := f.conns[id]; !ok {
		return worker.ErrNotFound
	}
	f.frames[id] = append(f.frames[id], string(data))
	return nil
}

func (f *fakeAPI) SendToUID(ctx context.Context, uids []string, data []byte, _ bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline(ctx, "SendToUID")
	n := 0
	for id, uid := range f.conns {
		if slices.Contains(uids, uid) {
			f.frames[id] = append(f.frames[id], string(data))
			n++
		}
	}
	return n, nil
}

func (f *fakeAPI) SendToGroup(ctx context.Context, groups []string, data []byte, _ bool, _ []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline(ctx, "SendToGroup")
	n := 0
	for _, g := range groups {
		for id := range f.groups[g] {
			f.frames[id] = append(f.frames[id], string(data))
			n++
		}
	}
	return n, nil
}

func (f *fakeAPI) JoinGroup(ctx context.Context, id, group string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline(ctx, "JoinGroup")
	if _, ok := f.conns[id]; !ok {
		return worker.ErrNotFound
	}
	if f.groups[group] == nil {
		f.groups[group] = map[string]bool{}
	}
	f.groups[group][id] = true
	return nil
}

func (f *fakeAPI) UIDsOnline(ctx context.Context, uids []string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline(ctx, "UIDsOnline")
	out := map[string]bool{}
	for _, uid := range f.conns {
		if slices.Contains(uids, uid) {
			out[uid] = true
		}
	}
	return out, nil
}

// take returns the frames id got since the last call, decoded.
func (f *fakeAPI) take(t *testing.T, id string) []frame {
	t.Helper()
	f.mu.Lock()
	raw := f.frames[id]
	delete(f.frames, id)
	f.mu.Unlock()
	out := make([]frame, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal([]byte(r), &out[i]); err != nil {
			t.Fatalf("%s got a frame that is not JSON: %s", id, r)
		}
		out[i]["_raw"] = r
	}
	return out
}

type frame map[string]any

func (f frame) str(k string) string { s, _ := f[k].(string); return s }
func (f frame) num(k string) int64  { n, _ := f[k].(float64); return int64(n) }
func (f frame) obj(k string) frame  { m, _ := f[k].(map[string]any); return frame(m) }

// types lists the frames' types.
func types(fs []frame) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.str("type")
	}
	return out
}

// find returns the only frame of type typ (and cond) among fs.
func find(t *testing.T, who string, fs []frame, typ string, cond func(frame) bool) frame {
	t.Helper()
	var found []frame
	for _, f := range fs {
		if f.str("type") == typ && (cond == nil || cond(f)) {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		var raws []string
		for _, f := range fs {
			raws = append(raws, f.str("_raw"))
		}
		t.Fatalf("%s: %d frames of type %s (want 1) among\n%s", who, len(found), typ, strings.Join(raws, "\n"))
	}
	return found[0]
}

type harness struct {
	t    *testing.T
	d    *Desk
	api  *fakeAPI
	st   *store.SQLite
	ctx  context.Context
	mu   sync.Mutex
	now  time.Time
	conn map[string]*worker.Client
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "desk.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertUsers(context.Background(), store.DemoUsers()); err != nil {
		t.Fatal(err)
	}
	x := &harness{t: t, api: newFakeAPI(), st: st, ctx: context.Background(), now: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC),
		conn: map[string]*worker.Client{}}
	cfg.Now = x.clock
	x.d = New(cfg, x.api, st, nil)
	t.Cleanup(func() {
		x.d.Close()
		st.Close()
		for _, p := range x.api.fails {
			t.Errorf("fake API: %s", p)
		}
	})
	return x
}

func (x *harness) clock() time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.now = x.now.Add(time.Millisecond)
	return x.now
}

func (x *harness) advance(d time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.now = x.now.Add(d)
}

// connect opens connection id bound to uid.
func (x *harness) connect(id, uid string) {
	x.conn[id] = x.api.connect(id, uid)
}

func (x *harness) close(id string) {
	x.api.disconnect(id)
	x.d.OnClose(x.ctx, x.conn[id])
}

// send sends a desk request from connection id.
func (x *harness) send(id string, req map[string]any) {
	x.t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		x.t.Fatal(err)
	}
	typ, _ := req["type"].(string)
	if !x.d.HandlesType(typ) {
		x.t.Fatalf("the desk does not handle %q", typ)
	}
	x.d.OnRequest(x.ctx, x.conn[id], typ, data)
}

func (x *harness) take(id string) []frame { x.t.Helper(); return x.api.take(x.t, id) }

// wantError checks that id got exactly one error frame with code.
func (x *harness) wantError(id, code, ref string) {
	x.t.Helper()
	fs := x.take(id)
	if len(fs) != 1 || fs[0].str("type") != "error" || fs[0].str("code") != code || fs[0].str("ref") != ref || fs[0].str("message") == "" {
		x.t.Fatalf("%s got %v, want one error %s about %s", id, fs, code, ref)
	}
}

// agentOnline connects agent uid on connection id, says hello and goes
// online; it returns the frames of the hello and the presence change.
func (x *harness) agentOnline(id, uid string) []frame {
	x.t.Helper()
	x.connect(id, uid)
	x.send(id, map[string]any{"type": "desk.hello"})
	w := find(x.t, id, x.take(id), "desk.welcome", nil)
	if w.str("role") != "agent" || w.str("uid") != uid || w.obj("self").str("uid") != uid {
		x.t.Fatalf("%s: welcome %s", id, w.str("_raw"))
	}
	x.send(id, map[string]any{"type": "desk.presence", "status": "online"})
	return x.take(id)
}

// TestVisitorQueuedThenAssigned is the story: a visitor writes while
// no agent is online (the message waits, the visitor learns it is queued);
// an agent comes online and gets it; the agent replies.
func TestVisitorQueuedThenAssigned(t *testing.T) {
	x := newHarness(t, Config{})
	x.connect("v", "v_1")
	x.send("v", map[string]any{"type": "desk.hello", "page": "https://shop.test/p/1", "referrer": "https://search.test/", "ua": "TestBrowser/1"})
	w := find(t, "v", x.take("v"), "desk.welcome", nil)
	if w.str("role") != "visitor" || w.obj("status").str("state") != "new" || w.obj("status").num("online") != 0 {
		t.Fatalf("visitor welcome %s", w.str("_raw"))
	}

	x.send("v", map[string]any{"type": "desk.say", "data": "有人吗？", "cmid": "c1"})
	fs := x.take("v")
	ack := find(t, "v", fs, "desk.message", nil)
	if ack.str("text") != "有人吗？" || ack.str("cmid") != "c1" || ack.str("role") != "visitor" || ack.num("msg_id") == 0 || ack.str("visitor") != "v_1" {
		t.Fatalf("ack %s", ack.str("_raw"))
	}
	st := find(t, "v", fs, "desk.status", nil)
	if st.str("state") != "queued" || st.num("position") != 1 || st.num("online") != 0 || st["agent"] != nil {
		t.Fatalf("status %s", st.str("_raw"))
	}
	// A retry stores nothing new.
	x.send("v", map[string]any{"type": "desk.say", "data": "有人吗？", "cmid": "c1"})
	if again := find(t, "v", x.take("v"), "desk.message", nil); again.num("msg_id") != ack.num("msg_id") {
		t.Fatalf("retry got msg_id %d, first %d", again.num("msg_id"), ack.num("msg_id"))
	}

	// Agent 86 comes online: the queue drains to them.
	fs = x.agentOnline("a86", "86")
	find(t, "a86", fs, "desk.presence", func(f frame) bool { return f.str("uid") == "86" && f.str("status") == "online" })
	as := find(t, "a86", fs, "desk.assigned", nil)
	if as.str("reason") != "queue" || as.obj("conversation").str("visitor") != "v_1" || as.obj("conversation").str("agent") != "86" ||
		as.obj("conversation").num("unread") != 1 || as.obj("conversation").obj("info").str("page") != "https://shop.test/p/1" {
		t.Fatalf("assigned %s", as.str("_raw"))
	}
	sys := find(t, "a86", fs, "desk.message", nil)
	if sys.str("role") != "system" || sys.obj("system").str("code") != "assigned" || sys.obj("system").obj("params").str("agent_name") != "大美如斯" {
		t.Fatalf("system line %s", sys.str("_raw"))
	}
	fs = x.take("v")
	find(t, "v", fs, "desk.message", func(f frame) bool { return f.str("role") == "system" })
	st = find(t, "v", fs, "desk.status", nil)
	if st.str("state") != "open" || st.obj("agent").str("uid") != "86" || st.obj("agent").str("nickname") != "大美如斯" ||
		st.obj("agent").str("presence") != "online" || st.num("online") != 1 {
		t.Fatalf("visitor status after assignment %s", st.str("_raw"))
	}

	// The agent sees the history and replies; the visitor gets it.
	x.send("a86", map[string]any{"type": "desk.history", "visitor": "v_1"})
	h := find(t, "a86", x.take("a86"), "desk.history", nil)
	msgs, _ := h["messages"].([]any)
	if len(msgs) != 2 || h["more"] != false {
		t.Fatalf("history %s", h.str("_raw"))
	}
	x.send("a86", map[string]any{"type": "desk.say", "visitor": "v_1", "data": "您好，我是大美如斯", "cmid": "a1"})
	reply := find(t, "v", x.take("v"), "desk.message", nil)
	if reply.str("role") != "agent" || reply.str("from") != "86" || reply.str("name") != "大美如斯" || reply.str("text") != "您好，我是大美如斯" {
		t.Fatalf("reply %s", reply.str("_raw"))
	}
	fs = x.take("a86")
	find(t, "a86", fs, "desk.message", func(f frame) bool { return f.str("cmid") == "a1" })
	conv := find(t, "a86", fs, "desk.conversation", nil)
	if conv.obj("last").str("text") != "您好，我是大美如斯" {
		t.Fatalf("list update %s", conv.str("_raw"))
	}

	// Reads: each side's receipt reaches the other.
	x.send("a86", map[string]any{"type": "desk.read", "visitor": "v_1", "upTo": ack.num("msg_id")})
	if r := find(t, "v", x.take("v"), "desk.receipt", nil); r.str("by") != "agent" || r.num("upTo") != ack.num("msg_id") {
		t.Fatalf("receipt %s", r.str("_raw"))
	}
	x.take("a86")
	x.send("v", map[string]any{"type": "desk.read", "upTo": reply.num("msg_id")})
	if r := find(t, "a86", x.take("a86"), "desk.receipt", nil); r.str("by") != "visitor" {
		t.Fatalf("receipt %s", r.str("_raw"))
	}
	x.take("v")
	// Nothing new to read: no receipt.
	x.send("v", map[string]any{"type": "desk.read", "upTo": reply.num("msg_id")})
	if fs := x.take("a86"); len(fs) != 0 {
		t.Fatalf("a repeated read sent %v", types(fs))
	}

	// Another agent may read the conversation but not write in it.
	x.agentOnline("a88", "88")
	x.send("a88", map[string]any{"type": "desk.say", "visitor": "v_1", "data": "me too"})
	x.wantError("a88", "not_assigned", "desk.say")
}

// TestTransfer: the conversation moves to another online agent with its
// history; a system line records it (code and params); the target is told.
func TestTransfer(t *testing.T) {
	x := newHarness(t, Config{})
	x.agentOnline("a86", "86")
	x.connect("v", "v_1")
	x.send("v", map[string]any{"type": "desk.say", "data": "hello"})
	x.send("a86", map[string]any{"type": "desk.say", "visitor": "v_1", "data": "hi, 86 here"})
	x.take("v")
	x.take("a86")
	x.connect("a88", "88")
	x.send("a88", map[string]any{"type": "desk.hello"})
	x.take("a88")
	// 88 is offline.
	x.send("a86", map[string]any{"type": "desk.transfer", "visitor": "v_1", "to": "88"})
	x.wantError("a86", "agent_unavailable", "desk.transfer")
	x.send("a86", map[string]any{"type": "desk.transfer", "visitor": "v_1", "to": "85"}) // a visitor
	x.wantError("a86", "agent_unavailable", "desk.transfer")
	x.send("a88", map[string]any{"type": "desk.presence", "status": "online"})
	x.take("a86")
	x.take("a88")
	x.take("v")
	// Only the serving agent transfers.
	x.send("a88", map[string]any{"type": "desk.transfer", "visitor": "v_1", "to": "86"})
	x.wantError("a88", "not_assigned", "desk.transfer")

	x.send("a86", map[string]any{"type": "desk.transfer", "visitor": "v_1", "to": "88"})
	wantLine := func(who string, fs []frame) {
		t.Helper()
		line := find(t, who, fs, "desk.message", nil)
		s := line.obj("system")
		p := s.obj("params")
		if line.str("role") != "system" || line.num("kind") != 3 || s.str("code") != "transferred" ||
			p.str("from") != "86" || p.str("to") != "88" || p.str("from_name") != "大美如斯" || p.str("to_name") != "悦悦" {
			t.Fatalf("%s: system line %s", who, line.str("_raw"))
		}
	}
	fs := x.take("a88")
	wantLine("a88", fs)
	as := find(t, "a88", fs, "desk.assigned", nil)
	if as.str("reason") != "transfer" || as.str("by") != "86" || as.obj("conversation").str("agent") != "88" {
		t.Fatalf("assigned %s", as.str("_raw"))
	}
	wantLine("a86", x.take("a86"))
	fs = x.take("v")
	wantLine("v", fs)
	if st := find(t, "v", fs, "desk.status", nil); st.obj("agent").str("uid") != "88" {
		t.Fatalf("visitor status %s", st.str("_raw"))
	}
	// History follows: 88 sees everything, 86 can no longer write.
	x.send("a88", map[string]any{"type": "desk.history", "visitor": "v_1"})
	h := find(t, "a88", x.take("a88"), "desk.history", nil)
	var texts []string
	for _, m := range h["messages"].([]any) {
		mf := frame(m.(map[string]any))
		if mf.str("role") == "system" {
			texts = append(texts, "system:"+mf.obj("system").str("code"))
		} else {
			texts = append(texts, mf.str("text"))
		}
	}
	if want := []string{"hello", "system:assigned", "hi, 86 here", "system:transferred"}; !slices.Equal(texts, want) {
		t.Fatalf("88's history %q, want %q", texts, want)
	}
	x.send("a86", map[string]any{"type": "desk.say", "visitor": "v_1", "data": "still me?"})
	x.wantError("a86", "not_assigned", "desk.say")
	x.send("a88", map[string]any{"type": "desk.say", "visitor": "v_1", "data": "88 here"})
	if m := find(t, "v", x.take("v"), "desk.message", nil); m.str("from") != "88" || m.str("name") != "悦悦" {
		t.Fatalf("visitor got %s", m.str("_raw"))
	}
}

// TestTyping: indicators are relayed both ways, throttled, and never
// stored.
func TestTyping(t *testing.T) {
	x := newHarness(t, Config{TypingGap: time.Second})
	x.agentOnline("a86", "86")
	x.connect("v", "v_1")
	x.send("v", map[string]any{"type": "desk.say", "data": "hello"})
	x.take("v")
	x.take("a86")
	x.send("v", map[string]any{"type": "desk.typing"})
	ty := find(t, "a86", x.take("a86"), "desk.typing", nil)
	if ty.str("visitor") != "v_1" || ty.str("role") != "visitor" || ty.num("expires_ms") <= 0 {
		t.Fatalf("typing %s", ty.str("_raw"))
	}
	x.send("v", map[string]any{"type": "desk.typing"}) // within the gap: dropped
	if fs := x.take("a86"); len(fs) != 0 {
		t.Fatalf("a second indicator within the gap reached the agent: %v", types(fs))
	}
	x.advance(time.Second)
	x.send("v", map[string]any{"type": "desk.typing"})
	find(t, "a86", x.take("a86"), "desk.typing", nil)
	x.send("a86", map[string]any{"type": "desk.typing", "visitor": "v_1"})
	if ty := find(t, "v", x.take("v"), "desk.typing", nil); ty.str("role") != "agent" || ty.str("name") != "大美如斯" {
		t.Fatalf("agent typing %s", ty.str("_raw"))
	}
	msgs, err := x.st.ConversationHistory(context.Background(), "v_1", store.Page{})
	if err != nil || len(msgs) != 2 { // hello and the assignment line
		t.Fatalf("history holds %d messages, %v", len(msgs), err)
	}
}

// TestPresenceGrace: an agent without connections stays online through the
// grace period (a reconnect in time changes nothing: no flapping), then goes
// offline; their conversations go back to the queue and to another agent.
func TestPresenceGrace(t *testing.T) {
	x := newHarness(t, Config{Grace: 10 * time.Second})
	x.agentOnline("a86", "86")
	x.connect("v", "v_1")
	x.send("v", map[string]any{"type": "desk.say", "data": "hello"})
	x.take("v")

	// 86 reloads the console: gone for 5s, back within the grace.
	x.close("a86")
	x.d.Sweep(x.ctx)
	x.advance(5 * time.Second)
	x.d.Sweep(x.ctx)
	x.connect("a86b", "86")
	x.send("a86b", map[string]any{"type": "desk.hello"})
	x.take("a86b")
	x.advance(20 * time.Second)
	x.d.Sweep(x.ctx)
	if fs := x.take("v"); len(fs) != 0 {
		t.Fatalf("the visitor got %v although 86 came back in time", types(fs))
	}
	// Away is kept as well, and takes no new conversations.
	x.send("a86b", map[string]any{"type": "desk.presence", "status": "away"})
	if st := find(t, "v", x.take("v"), "desk.status", nil); st.obj("agent").str("presence") != "away" || st.num("online") != 0 {
		t.Fatalf("status while away %s", st.str("_raw"))
	}
	x.send("a86b", map[string]any{"type": "desk.presence", "status": "online"})
	x.take("v")

	// 88 online too; 86 leaves for good.
	x.agentOnline("a88", "88")
	x.take("a86b")
	x.close("a86b")
	x.d.Sweep(x.ctx)
	x.advance(9 * time.Second)
	x.d.Sweep(x.ctx)
	if fs := x.take("a88"); len(fs) != 0 {
		t.Fatalf("before the grace ran out 88 got %v", types(fs))
	}
	x.advance(2 * time.Second)
	x.d.Sweep(x.ctx)
	fs := x.take("a88")
	p := find(t, "a88", fs, "desk.presence", nil)
	if p.str("uid") != "86" || p.str("status") != "offline" || p.str("reason") != "disconnected" {
		t.Fatalf("presence %s", p.str("_raw"))
	}
	if as := find(t, "a88", fs, "desk.assigned", nil); as.obj("conversation").str("visitor") != "v_1" {
		t.Fatalf("assigned %s", as.str("_raw"))
	}
	c, err := x.st.Conversation(context.Background(), "v_1")
	if err != nil || c.Agent != "88" || c.LastAgent != "88" {
		t.Fatalf("conversation %+v, %v", c, err)
	}
}

// TestReturningVisitor: a visitor whose conversation was closed goes back to
// the agent who served them, when online.
func TestReturningVisitor(t *testing.T) {
	x := newHarness(t, Config{})
	x.agentOnline("a86", "86")
	x.connect("v", "v_1")
	x.send("v", map[string]any{"type": "desk.say", "data": "hello"})
	x.agentOnline("a88", "88")
	x.send("a86", map[string]any{"type": "desk.close", "visitor": "v_1"})
	x.take("v")
	x.take("a86")
	// 88 now has fewer conversations (0) than 86 (0 too) but was assigned
	// less recently; still, v_1 goes back to 86.
	x.send("v", map[string]any{"type": "desk.say", "data": "me again"})
	if st := find(t, "v", x.take("v"), "desk.status", nil); st.obj("agent").str("uid") != "86" {
		t.Fatalf("returning visitor got %s", st.str("_raw"))
	}
}

// TestRefusals covers requests the desk refuses.
func TestRefusals(t *testing.T) {
	x := newHarness(t, Config{})
	x.connect("u", "")
	x.send("u", map[string]any{"type": "desk.hello"})
	x.wantError("u", "not_bound", "desk.hello")
	x.connect("d", store.DeskUID)
	x.send("d", map[string]any{"type": "desk.hello"})
	x.wantError("d", "forbidden", "desk.hello")
	x.connect("v", "v_1")
	for _, tc := range []struct {
		req  map[string]any
		code string
	}{
		{map[string]any{"type": "desk.list"}, "not_agent"},
		{map[string]any{"type": "desk.transfer", "visitor": "v_1", "to": "86"}, "not_agent"},
		{map[string]any{"type": "desk.dance"}, "unknown_type"},
		{map[string]any{"type": "desk.say"}, "missing_field"},
		{map[string]any{"type": "desk.say", "data": "   "}, "missing_field"},
		{map[string]any{"type": "desk.say", "data": 5}, "invalid_field"},
		{map[string]any{"type": "desk.say", "data": strings.Repeat("x", store.MaxTextBytes+1)}, "invalid_field"},
		{map[string]any{"type": "desk.say", "image": "nope"}, "not_found"},
		{map[string]any{"type": "desk.email", "email": "not an email"}, "invalid_field"},
		{map[string]any{"type": "desk.history", "limit": 1000}, "invalid_field"},
		{map[string]any{"type": "desk.read", "upTo": 0}, "invalid_field"},
	} {
		x.send("v", tc.req)
		x.wantError("v", tc.code, tc.req["type"].(string))
	}
	x.agentOnline("a", "86")
	for _, tc := range []struct {
		req  map[string]any
		code string
	}{
		{map[string]any{"type": "desk.say", "data": "x"}, "missing_field"},
		{map[string]any{"type": "desk.say", "visitor": "nobody", "data": "x"}, "not_found"},
		{map[string]any{"type": "desk.presence", "status": "busy"}, "invalid_field"},
		{map[string]any{"type": "desk.list", "filter": "mine-and-yours"}, "invalid_field"},
		{map[string]any{"type": "desk.claim", "visitor": "nobody"}, "not_found"},
		{map[string]any{"type": "desk.close", "visitor": "v_1"}, "not_assigned"},
		{map[string]any{"type": "desk.canned.save", "shortcut": "Bad Shortcut", "body": "x"}, "invalid_field"},
		{map[string]any{"type": "desk.canned.delete", "shortcut": "none"}, "not_found"},
	} {
		x.send("a", tc.req)
		x.wantError("a", tc.code, tc.req["type"].(string))
	}
}

// TestListClaimAndCanned: the agents' list filters, claiming from the queue,
// canned replies shared by every console.
func TestListClaimAndCanned(t *testing.T) {
	x := newHarness(t, Config{MaxOpen: 1})
	x.agentOnline("a86", "86")
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("v%d", i)
		x.connect(id, "v_"+id)
		x.send(id, map[string]any{"type": "desk.say", "data": "message from " + id})
		x.take(id)
	}
	list := func(filter string) []string {
		t.Helper()
		x.send("a86", map[string]any{"type": "desk.list", "filter": filter})
		l := find(t, "a86", x.take("a86"), "desk.list", nil)
		var out []string
		for _, c := range l["conversations"].([]any) {
			out = append(out, frame(c.(map[string]any)).str("visitor"))
		}
		return out
	}
	x.take("a86")
	if got := list("mine"); !slices.Equal(got, []string{"v_v1"}) {
		t.Fatalf("mine = %v (cap 1)", got)
	}
	if got := list("unassigned"); !slices.Equal(got, []string{"v_v3", "v_v2"}) {
		t.Fatalf("unassigned = %v", got)
	}
	if got := list("all"); !slices.Equal(got, []string{"v_v3", "v_v2", "v_v1"}) {
		t.Fatalf("all = %v", got)
	}
	// Claiming ignores the cap.
	x.send("a86", map[string]any{"type": "desk.claim", "visitor": "v_v2"})
	if as := find(t, "a86", x.take("a86"), "desk.assigned", nil); as.str("reason") != "claim" {
		t.Fatalf("claim %s", as.str("_raw"))
	}
	if st := find(t, "v2", x.take("v2"), "desk.status", nil); st.str("state") != "open" || st.obj("agent").str("uid") != "86" {
		t.Fatalf("claimed visitor status %s", st.str("_raw"))
	}
	x.send("a86", map[string]any{"type": "desk.canned.save", "shortcut": "hello", "body": "您好！"})
	c := find(t, "a86", x.take("a86"), "desk.canned", nil)
	if rs := c["replies"].([]any); len(rs) != 1 || frame(rs[0].(map[string]any)).str("body") != "您好！" {
		t.Fatalf("canned %s", c.str("_raw"))
	}
}

// TestImageMessages: an uploaded image of the sender's is sent as a message
// of kind 2 with its URL and thumbnail; someone else's image is refused.
func TestImageMessages(t *testing.T) {
	x := newHarness(t, Config{})
	x.agentOnline("a86", "86")
	x.connect("v", "v_1")
	x.send("v", map[string]any{"type": "desk.say", "data": "hello"})
	x.take("v")
	x.take("a86")
	for id, owner := range map[string]string{"aa11": "v_1", "bb22": "v_2"} {
		if err := x.st.SaveImage(context.Background(), store.Image{ID: id, Owner: owner, ContentType: "image/png", Data: []byte("png"),
			ThumbType: "image/png", Thumb: []byte("thumb"), Width: 10, Height: 10}); err != nil {
			t.Fatal(err)
		}
	}
	x.send("v", map[string]any{"type": "desk.say", "image": "bb22", "cmid": "i0"})
	x.wantError("v", "not_found", "desk.say")
	x.send("v", map[string]any{"type": "desk.say", "image": "aa11", "data": "both", "cmid": "i1"})
	x.wantError("v", "invalid_field", "desk.say")
	x.send("v", map[string]any{"type": "desk.say", "image": "aa11", "cmid": "i2"})
	m := find(t, "a86", x.take("a86"), "desk.message", nil)
	if m.num("kind") != 2 || m.obj("image").str("url") != "/desk/images/aa11" || m.obj("image").str("thumb") != "/desk/images/aa11/thumb" || m["text"] != nil {
		t.Fatalf("image message %s", m.str("_raw"))
	}
	if ack := find(t, "v", x.take("v"), "desk.message", nil); ack.str("cmid") != "i2" {
		t.Fatalf("ack %s", ack.str("_raw"))
	}
	x.send("a86", map[string]any{"type": "desk.list", "filter": "mine"})
	l := find(t, "a86", x.take("a86"), "desk.list", nil)
	if last := frame(l["conversations"].([]any)[0].(map[string]any)).obj("last"); last.num("kind") != 2 {
		t.Fatalf("list preview %v", last)
	}
}
