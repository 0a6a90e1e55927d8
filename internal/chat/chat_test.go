package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/worker"
)

// fakeAPI is an in-memory worker.API: a set of connected clients with the
// uid each is bound to. It records every frame sent, per client, and checks
// that every call carries a deadline within the Handler's timeout and the
// values of the context the Handler got.
type fakeAPI struct {
	timeout time.Duration

	mu       sync.Mutex
	conns    map[string]string   // client_id → uid ("" when unbound)
	frames   map[string][]string // client_id → frames received, in order
	uidSends [][]string          // uids of each SendToUID call
	binds    []string            // "client_id=uid" of each successful BindUID
	failUID  map[string]error    // SendToUID fails when it targets one of these uids
	bindErr  error               // BindUID fails with this error
	problems []string            // contract violations seen by the fake
}

type ctxKey struct{}

func newFakeAPI(timeout time.Duration) *fakeAPI {
	return &fakeAPI{
		timeout: timeout,
		conns:   map[string]string{},
		frames:  map[string][]string{},
		failUID: map[string]error{},
	}
}

// connect adds a connected client bound to uid ("" for none) and returns its
// worker.Client.
func (f *fakeAPI) connect(clientID, uid string) *worker.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns[clientID] = uid
	return &worker.Client{ID: clientID, UID: uid}
}

func (f *fakeAPI) check(ctx context.Context, call string) {
	deadline, ok := ctx.Deadline()
	switch {
	case !ok:
		f.problems = append(f.problems, call+" without a deadline")
	case time.Until(deadline) > f.timeout:
		f.problems = append(f.problems, fmt.Sprintf("%s deadline %v away, more than %v", call, time.Until(deadline), f.timeout))
	}
	if ctx.Value(ctxKey{}) != "handler ctx" {
		f.problems = append(f.problems, call+" context not derived from the handler's")
	}
}

func (f *fakeAPI) SendToClient(ctx context.Context, clientID string, data []byte, binary bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.check(ctx, "SendToClient")
	if binary {
		f.problems = append(f.problems, "binary SendToClient")
	}
	if _, ok := f.conns[clientID]; !ok {
		return worker.ErrNotFound
	}
	f.frames[clientID] = append(f.frames[clientID], string(data))
	return nil
}

func (f *fakeAPI) SendToUID(ctx context.Context, uids []string, data []byte, binary bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.check(ctx, "SendToUID")
	if binary {
		f.problems = append(f.problems, "binary SendToUID")
	}
	f.uidSends = append(f.uidSends, slices.Clone(uids))
	for _, uid := range uids {
		if err := f.failUID[uid]; err != nil {
			return 0, err
		}
	}
	n := 0
	for id, uid := range f.conns {
		if uid != "" && slices.Contains(uids, uid) {
			f.frames[id] = append(f.frames[id], string(data))
			n++
		}
	}
	return n, nil
}

func (f *fakeAPI) BindUID(ctx context.Context, clientID, uid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.check(ctx, "BindUID")
	if f.bindErr != nil {
		return f.bindErr
	}
	if uid == "" {
		return worker.ErrInvalidArgument
	}
	if _, ok := f.conns[clientID]; !ok {
		return worker.ErrNotFound
	}
	f.conns[clientID] = uid
	f.binds = append(f.binds, clientID+"="+uid)
	return nil
}

func (f *fakeAPI) unexpected(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, "unexpected call "+call)
	return errors.New("unexpected call " + call)
}

func (f *fakeAPI) IsUIDOnline(context.Context, string) (bool, error) {
	return false, f.unexpected("IsUIDOnline")
}
func (f *fakeAPI) UnbindUID(context.Context, string, string) error {
	return f.unexpected("UnbindUID")
}
func (f *fakeAPI) ClientIDsByUID(context.Context, string) ([]string, error) {
	return nil, f.unexpected("ClientIDsByUID")
}
func (f *fakeAPI) UIDByClientID(context.Context, string) (string, error) {
	return "", f.unexpected("UIDByClientID")
}
func (f *fakeAPI) CloseClient(context.Context, string, []byte) error {
	return f.unexpected("CloseClient")
}

// received returns the frames clientID got and forgets them.
func (f *fakeAPI) received(clientID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	got := f.frames[clientID]
	delete(f.frames, clientID)
	return got
}

func (f *fakeAPI) sendsToUID() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.uidSends)
}

var (
	testNow  = time.Date(2024, 3, 5, 1, 2, 3, 999, time.UTC)
	testZone = time.FixedZone("CST", 8*60*60)
)

const testDate = "2024-03-05 09:02:03" // testNow in testZone

type harness struct {
	h   *Handler
	api *fakeAPI
	log *bytes.Buffer
	ctx context.Context
}

// newHarness builds a Handler with InsecureBind as given, a fixed clock, a
// fake API and a debug log captured in a buffer. It fails the test at the
// end if the fake saw a contract violation.
func newHarness(t testing.TB, insecureBind bool) *harness {
	t.Helper()
	cfg := Config{InsecureBind: insecureBind, Now: func() time.Time { return testNow }, Location: testZone, Timeout: 2 * time.Second}
	api := newFakeAPI(cfg.Timeout)
	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		api.mu.Lock()
		defer api.mu.Unlock()
		for _, p := range api.problems {
			t.Errorf("fake API: %s", p)
		}
	})
	return &harness{
		h:   New(cfg, api, log),
		api: api,
		log: &logBuf,
		ctx: context.WithValue(context.Background(), ctxKey{}, "handler ctx"),
	}
}

func (x *harness) send(c *worker.Client, frame string) {
	x.h.OnMessage(x.ctx, c, worker.Message{Data: []byte(frame)})
}

// wantFrames fails unless clientID received exactly want since the last
// call.
func (x *harness) wantFrames(t *testing.T, clientID string, want ...string) {
	t.Helper()
	got := x.api.received(clientID)
	if !slices.Equal(got, want) {
		t.Errorf("%s received\n%s\nwant\n%s", clientID, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// wantError fails unless clientID received exactly one error frame with code
// and ref.
func (x *harness) wantError(t *testing.T, clientID, code, ref string) {
	t.Helper()
	got := x.api.received(clientID)
	if len(got) != 1 {
		t.Fatalf("%s received %d frames %q, want one error frame", clientID, len(got), got)
	}
	checkErrorFrame(t, got[0], code, ref)
}

func checkErrorFrame(t *testing.T, frame, code, ref string) {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal([]byte(frame), &e); err != nil {
		t.Fatalf("error frame %q: %v", frame, err)
	}
	msg, _ := e["message"].(string)
	if e["type"] != "error" || e["code"] != code || msg == "" {
		t.Errorf("got %s, want an error frame with code %q and a message", frame, code)
	}
	if gotRef, _ := e["ref"].(string); gotRef != ref {
		t.Errorf("got %s, want ref %q", frame, ref)
	}
	wantFields := 3 // type, code, message
	if ref != "" {
		wantFields++
	}
	if !strings.HasPrefix(frame, `{"type":"error","code":`) || len(e) != wantFields {
		t.Errorf("error frame %s does not have exactly the fields type, code, message (and ref when known) in order", frame)
	}
}

func TestNewDefaults(t *testing.T) {
	h := New(Config{}, newFakeAPI(time.Second), nil)
	if h.timeout != 5*time.Second || h.loc != time.Local || h.now == nil || h.log == nil || h.insecureBind {
		t.Errorf("New(Config{}) = %+v, want 5s timeout, time.Local, time.Now, a discard logger, secure bind", h)
	}
	h = New(Config{Timeout: -time.Second}, newFakeAPI(time.Second), nil)
	if h.timeout != 5*time.Second {
		t.Errorf("negative Timeout became %v, want 5s", h.timeout)
	}
	// A nil logger must be usable: this logs a refusal.
	h.OnMessage(context.Background(), &worker.Client{ID: "c1"}, worker.Message{Data: []byte("x")})
}

func TestOnConnectSendsInit(t *testing.T) {
	x := newHarness(t, false)
	c := x.api.connect("c1", "")
	x.h.OnConnect(x.ctx, c)
	x.wantFrames(t, "c1", `{"type":"init","client_id":"c1"}`)
}

func TestOnWebSocketConnectAndOnCloseSendNothing(t *testing.T) {
	x := newHarness(t, true)
	c := x.api.connect("c1", "85")
	x.h.OnWebSocketConnect(x.ctx, c, &worker.Request{Path: "/"})
	x.h.OnClose(x.ctx, c)
	x.wantFrames(t, "c1")
	if sends := x.api.sendsToUID(); len(sends) != 0 {
		t.Errorf("SendToUID calls %v, want none", sends)
	}
}

func TestBindRequiresTokenWithoutInsecureBind(t *testing.T) {
	x := newHarness(t, false)
	c := x.api.connect("c1", "")
	x.send(c, `{"client_id":"c1","frontId":"85","type":"bind"}`)
	got := x.api.received("c1")
	if len(got) != 1 {
		t.Fatalf("received %q, want one error frame", got)
	}
	checkErrorFrame(t, got[0], "token_required", "bind")
	if !strings.Contains(got[0], "-insecure-bind") {
		t.Errorf("error frame %s does not mention -insecure-bind", got[0])
	}
	if len(x.api.binds) != 0 {
		t.Errorf("binds %v, want none", x.api.binds)
	}
}

func TestBind(t *testing.T) {
	tests := []struct {
		name      string
		frame     string
		bindErr   error
		wantBind  string // "" when nothing may be bound
		wantFrame string // the exact ack, when the bind succeeds
		wantCode  string
	}{
		{name: "seed bind", frame: `{"client_id":"c1","frontId":"85","type":"bind"}`,
			wantBind: "c1=85", wantFrame: `{"type":"bound","client_id":"c1","frontId":"85"}`},
		{name: "integer frontId", frame: `{"type":"bind","client_id":"c1","frontId":85}`,
			wantBind: "c1=85", wantFrame: `{"type":"bound","client_id":"c1","frontId":"85"}`},
		{name: "without client_id", frame: `{"type":"bind","frontId":"用户"}`,
			wantBind: "c1=用户", wantFrame: `{"type":"bound","client_id":"c1","frontId":"用户"}`},
		{name: "uid 0", frame: `{"type":"bind","frontId":0}`,
			wantBind: "c1=0", wantFrame: `{"type":"bound","client_id":"c1","frontId":"0"}`},
		{name: "extra token ignored", frame: `{"type":"bind","frontId":"85","token":"t"}`,
			wantBind: "c1=85", wantFrame: `{"type":"bound","client_id":"c1","frontId":"85"}`},
		{name: "other client_id", frame: `{"type":"bind","client_id":"c2","frontId":"85"}`, wantCode: "client_id_mismatch"},
		{name: "empty client_id", frame: `{"type":"bind","client_id":"","frontId":"85"}`, wantCode: "client_id_mismatch"},
		{name: "numeric client_id", frame: `{"type":"bind","client_id":1,"frontId":"85"}`, wantCode: "invalid_field"},
		{name: "null client_id", frame: `{"type":"bind","client_id":null,"frontId":"85"}`, wantCode: "invalid_field"},
		{name: "missing frontId", frame: `{"type":"bind","client_id":"c1"}`, wantCode: "missing_field"},
		{name: "empty frontId", frame: `{"type":"bind","frontId":""}`, wantCode: "missing_field"},
		{name: "bool frontId", frame: `{"type":"bind","frontId":true}`, wantCode: "invalid_field"},
		{name: "float frontId", frame: `{"type":"bind","frontId":85.5}`, wantCode: "invalid_field"},
		{name: "null frontId", frame: `{"type":"bind","frontId":null}`, wantCode: "invalid_field"},
		{name: "object frontId", frame: `{"type":"bind","frontId":{"id":85}}`, wantCode: "invalid_field"},
		{name: "array frontId", frame: `{"type":"bind","frontId":["85"]}`, wantCode: "invalid_field"},
		{name: "directory down", frame: `{"type":"bind","frontId":"85"}`, bindErr: worker.ErrUnavailable, wantCode: "unavailable"},
		{name: "uid rejected", frame: `{"type":"bind","frontId":"85"}`, bindErr: worker.ErrInvalidArgument, wantCode: "invalid_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			x.api.bindErr = tt.bindErr
			c := x.api.connect("c1", "")
			x.send(c, tt.frame)
			if tt.wantCode != "" {
				x.wantError(t, "c1", tt.wantCode, "bind")
			} else {
				x.wantFrames(t, "c1", tt.wantFrame)
			}
			var want []string
			if tt.wantBind != "" {
				want = []string{tt.wantBind}
			}
			if !slices.Equal(x.api.binds, want) {
				t.Errorf("binds %v, want %v", x.api.binds, want)
			}
		})
	}
}

func TestSayDeliversTextAndSavesToEverySenderDevice(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c1-phone", "85") // the sender's second device
	x.api.connect("c2", "86")
	x.api.connect("c2-phone", "86")
	x.api.connect("c3", "87")

	x.send(sender, `{"data":"你好 <b>\"x\" & 'y'\r\nbye\n","type":"say","frontId":"85","toId":"86"}`)

	const body = `"id":"c1","frontId":"85","toId":"86","date":"` + testDate + `",` +
		`"data":"你好 &lt;b&gt;&quot;x&quot; &amp; &#039;y&#039;<br />\r\nbye<br />\n",` +
		`"raw":"你好 <b>\"x\" & 'y'\r\nbye\n"`
	text := `{"type":"text",` + body + `}`
	save := `{"type":"save",` + body + `,"is_read":1}`
	x.wantFrames(t, "c2", text)
	x.wantFrames(t, "c2-phone", text)
	x.wantFrames(t, "c1", save)
	x.wantFrames(t, "c1-phone", save)
	x.wantFrames(t, "c3")
	if got, want := x.api.sendsToUID(), [][]string{{"86"}, {"85"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("SendToUID calls %v, want %v", got, want)
	}
}

func TestSayToOfflineUIDSavesUnread(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.send(sender, `{"type":"say","frontId":"85","toId":"86","data":"anyone?"}`)
	x.wantFrames(t, "c1", `{"type":"save","id":"c1","frontId":"85","toId":"86","date":"`+testDate+
		`","data":"anyone?","raw":"anyone?","is_read":0}`)
	if got := x.api.sendsToUID(); len(got) != 2 || got[0][0] != "86" {
		t.Errorf("SendToUID calls %v, want a delivery attempt to 86 and a save to 85", got)
	}
}

func TestSayAcceptsIntegerUIDs(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c2", "86")
	x.send(sender, `{"type":"say","frontId":85,"toId":86,"data":""}`)
	x.wantFrames(t, "c2", `{"type":"text","id":"c1","frontId":"85","toId":"86","date":"`+testDate+`","data":"","raw":""}`)
	x.wantFrames(t, "c1", `{"type":"save","id":"c1","frontId":"85","toId":"86","date":"`+testDate+`","data":"","raw":"","is_read":1}`)
}

func TestSayToSelf(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.send(sender, `{"type":"say","frontId":"85","toId":"85","data":"note"}`)
	got := x.api.received("c1")
	if len(got) != 2 || !strings.HasPrefix(got[0], `{"type":"text"`) || !strings.HasSuffix(got[1], `"is_read":1}`) {
		t.Errorf("received %q, want the text and a save with is_read 1", got)
	}
}

func TestSayRefused(t *testing.T) {
	tests := []struct {
		name     string
		uid      string // the sender connection's uid
		frame    string
		wantCode string
	}{
		{"unbound", "", `{"type":"say","frontId":"85","toId":"86","data":"hi"}`, "not_bound"},
		{"unbound without fields", "", `{"type":"say"}`, "not_bound"},
		{"forged frontId", "85", `{"type":"say","frontId":"86","toId":"87","data":"hi"}`, "forbidden"},
		{"forged integer frontId", "85", `{"type":"say","frontId":86,"toId":"86","data":"hi"}`, "forbidden"},
		{"frontId differs by case", "abc", `{"type":"say","frontId":"ABC","toId":"86","data":"hi"}`, "forbidden"},
		{"missing frontId", "85", `{"type":"say","toId":"86","data":"hi"}`, "missing_field"},
		{"missing toId", "85", `{"type":"say","frontId":"85","data":"hi"}`, "missing_field"},
		{"empty toId", "85", `{"type":"say","frontId":"85","toId":"","data":"hi"}`, "missing_field"},
		{"bool toId", "85", `{"type":"say","frontId":"85","toId":false,"data":"hi"}`, "invalid_field"},
		{"float toId", "85", `{"type":"say","frontId":"85","toId":86.0,"data":"hi"}`, "invalid_field"},
		{"exponent toId", "85", `{"type":"say","frontId":"85","toId":8.6e1,"data":"hi"}`, "invalid_field"},
		{"huge toId", "85", `{"type":"say","frontId":"85","toId":99999999999999999999,"data":"hi"}`, "invalid_field"},
		{"null toId", "85", `{"type":"say","frontId":"85","toId":null,"data":"hi"}`, "invalid_field"},
		{"object toId", "85", `{"type":"say","frontId":"85","toId":{},"data":"hi"}`, "invalid_field"},
		{"array toId", "85", `{"type":"say","frontId":"85","toId":["86"],"data":"hi"}`, "invalid_field"},
		{"missing data", "85", `{"type":"say","frontId":"85","toId":"86"}`, "missing_field"},
		{"numeric data", "85", `{"type":"say","frontId":"85","toId":"86","data":42}`, "invalid_field"},
		{"null data", "85", `{"type":"say","frontId":"85","toId":"86","data":null}`, "invalid_field"},
		{"object data", "85", `{"type":"say","frontId":"85","toId":"86","data":{"text":"hi"}}`, "invalid_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			c := x.api.connect("c1", tt.uid)
			x.api.connect("c2", "86")
			x.api.connect("c3", "87")
			x.send(c, tt.frame)
			x.wantError(t, "c1", tt.wantCode, "say")
			x.wantFrames(t, "c2")
			x.wantFrames(t, "c3")
			if sends := x.api.sendsToUID(); len(sends) != 0 {
				t.Errorf("SendToUID calls %v, want none", sends)
			}
		})
	}
}

func TestSayDeliveryFailureRepliesUnavailableWithoutSave(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c1-phone", "85")
	x.api.failUID["86"] = fmt.Errorf("gateway g1: %w", worker.ErrUnavailable)
	x.send(sender, `{"type":"say","frontId":"85","toId":"86","data":"top secret body"}`)
	x.wantError(t, "c1", "unavailable", "say")
	x.wantFrames(t, "c1-phone")
	if got := x.api.sendsToUID(); len(got) != 1 {
		t.Errorf("SendToUID calls %v, want only the failed delivery", got)
	}
	logs := x.log.String()
	for _, want := range []string{`"client_id":"c1"`, `"uid":"85"`, `"err":"deliver to uid 86: gateway g1: unavailable"`, `"level":"WARN"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log %s lacks %s", logs, want)
		}
	}
	if strings.Contains(logs, "top secret") {
		t.Errorf("log %s contains the message body", logs)
	}
}

func TestSaySaveFailureIsLoggedOnly(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c2", "86")
	x.api.failUID["85"] = worker.ErrUnavailable
	x.send(sender, `{"type":"say","frontId":"85","toId":"86","data":"hi"}`)
	if got := x.api.received("c2"); len(got) != 1 {
		t.Errorf("recipient received %q, want the text", got)
	}
	x.wantFrames(t, "c1") // delivered: no error frame, and the save failed
	if logs := x.log.String(); !strings.Contains(logs, `"err":"unavailable"`) {
		t.Errorf("log %s lacks the save failure", logs)
	}
}

func TestGarbageGetsErrorFramesAndTheConnectionStaysUsable(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		binary   bool
		wantCode string
		wantRef  string
	}{
		{"empty frame", "", false, "invalid_json", ""},
		{"not JSON", "hello", false, "invalid_json", ""},
		{"truncated", `{"type":"say"`, false, "invalid_json", ""},
		{"trailing garbage", `{"type":"say"}}`, false, "invalid_json", ""},
		{"seed client with an unescaped quote", `{"data":"say "hi"","type":"say","frontId":"85","toId":"86"}`, false, "invalid_json", ""},
		{"null", "null", false, "invalid_json", ""},
		{"array", `[{"type":"say"}]`, false, "invalid_json", ""},
		{"string", `"say"`, false, "invalid_json", ""},
		{"number", "1", false, "invalid_json", ""},
		{"invalid UTF-8 outside strings", "\xff{}", false, "invalid_json", ""},
		{"binary", `{"type":"say","frontId":"85","toId":"86","data":"hi"}`, true, "binary_frame", ""},
		{"no type", `{"frontId":"85"}`, false, "missing_type", ""},
		{"empty type", `{"type":""}`, false, "missing_type", ""},
		{"null type", `{"type":null}`, false, "missing_type", ""},
		{"numeric type", `{"type":1}`, false, "invalid_field", ""},
		{"unknown type", `{"type":"dance"}`, false, "unknown_type", "dance"},
		{"server type from a client", `{"type":"text","frontId":"85","toId":"86","data":"hi"}`, false, "unknown_type", "text"},
		{"type in other case", `{"type":"SAY","frontId":"85","toId":"86","data":"hi"}`, false, "unknown_type", "SAY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			c := x.api.connect("c1", "85")
			x.api.connect("c2", "86")
			x.h.OnMessage(x.ctx, c, worker.Message{Data: []byte(tt.data), Binary: tt.binary})
			x.wantError(t, "c1", tt.wantCode, tt.wantRef)
			if sends := x.api.sendsToUID(); len(sends) != 0 {
				t.Errorf("SendToUID calls %v, want none", sends)
			}
			// The next good frame still works.
			x.send(c, `{"type":"say","frontId":"85","toId":"86","data":"still here"}`)
			if got := x.api.received("c2"); len(got) != 1 {
				t.Errorf("after the error the recipient received %q, want one text", got)
			}
		})
	}
}

// TestSeedConversation replays the seed tutorial's clients: connect, bind on
// init, say, and the peer's text.
func TestSeedConversation(t *testing.T) {
	x := newHarness(t, true)
	a := x.api.connect("ca", "")
	b := x.api.connect("cb", "")
	for _, c := range []struct {
		conn *worker.Client
		uid  string
	}{{a, "85"}, {b, "86"}} {
		x.h.OnConnect(x.ctx, c.conn)
		var init struct {
			Type     string `json:"type"`
			ClientID string `json:"client_id"`
		}
		frames := x.api.received(c.conn.ID)
		if len(frames) != 1 || json.Unmarshal([]byte(frames[0]), &init) != nil || init.Type != "init" {
			t.Fatalf("%s got %q, want an init frame", c.conn.ID, frames)
		}
		// The seed builds this frame by string concatenation.
		x.send(c.conn, `{"client_id":"`+init.ClientID+`","frontId":"`+c.uid+`","type":"bind"}`)
		x.wantFrames(t, c.conn.ID, `{"type":"bound","client_id":"`+c.conn.ID+`","frontId":"`+c.uid+`"}`)
		c.conn.UID = c.uid // the worker reports the new uid with the next event
	}
	x.send(a, `{"data":"在吗?","type":"say","frontId":"85","toId":"86"}`)
	var text map[string]any
	frames := x.api.received("cb")
	if len(frames) != 1 || json.Unmarshal([]byte(frames[0]), &text) != nil {
		t.Fatalf("cb got %q, want one text frame", frames)
	}
	if text["type"] != "text" || text["frontId"] != "85" || text["data"] != "在吗?" || text["date"] != testDate {
		t.Errorf("cb got %v", text)
	}
}

// FuzzOnMessage feeds arbitrary frames to bound and unbound connections and
// checks that nothing panics, that every frame sent is a JSON object with a
// type, and that nothing is ever delivered on behalf of another uid.
func FuzzOnMessage(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"type":"bind","client_id":"c1","frontId":"85"}`,
		`{"type":"bind","frontId":85}`, `{"type":"say","frontId":"85","toId":"86","data":"<a>\r\n"}`,
		`{"type":"say","frontId":"86","toId":"85","data":"x"}`, `{"type":"say","frontId":85,"toId":86,"data":"\ud800"}`,
		`{"type":"say","frontId":"85","toId":"86","data":"` + "\xe4\xb8" + `"}`, `{"type":5}`, `{"type":"x"}`,
	} {
		f.Add([]byte(s), false, true)
		f.Add([]byte(s), false, false)
	}
	f.Add([]byte{0xff, 0x00}, true, true)
	f.Fuzz(func(t *testing.T, data []byte, binary, bound bool) {
		x := newHarness(t, true)
		uid := ""
		if bound {
			uid = "85"
		}
		c := x.api.connect("c1", uid)
		x.api.connect("c2", "86")
		x.api.connect("c3", "0")
		x.h.OnMessage(x.ctx, c, worker.Message{Data: data, Binary: binary})

		x.api.mu.Lock()
		defer x.api.mu.Unlock()
		for id, frames := range x.api.frames {
			for _, frame := range frames {
				var v map[string]any
				if err := json.Unmarshal([]byte(frame), &v); err != nil {
					t.Fatalf("%s got invalid JSON %q: %v", id, frame, err)
				}
				typ, _ := v["type"].(string)
				switch typ {
				case "error":
					if id != "c1" {
						t.Fatalf("error frame %s sent to %s", frame, id)
					}
				case "text", "save":
					if v["frontId"] != "85" || !bound {
						t.Fatalf("%s frame %s sent on behalf of another uid (sender bound %v)", typ, frame, bound)
					}
				case "bound":
					if v["client_id"] != "c1" {
						t.Fatalf("bound frame %s for another connection", frame)
					}
				default:
					t.Fatalf("%s got unexpected frame %s", id, frame)
				}
			}
		}
		if !bound && len(x.api.uidSends) != 0 {
			t.Fatalf("unbound connection caused SendToUID calls %v", x.api.uidSends)
		}
	})
}
