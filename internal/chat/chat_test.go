package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/bindtoken"
	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// fakeAPI is an in-memory worker.API: a set of connected clients with the
// uid each is bound to. It records every frame sent, per client, and checks
// that every call carries a deadline within the Handler's timeout and the
// values of the context the Handler got.
type fakeAPI struct {
	// API is nil: the calls the chat never makes panic.
	worker.API

	timeout time.Duration

	mu       sync.Mutex
	conns    map[string]string   // client_id → uid ("" when unbound)
	frames   map[string][]string // client_id → frames received, in order
	uidSends [][]string          // uids each SendToUID call, or SendToAll call to client_ids, addressed
	lookups  [][]string          // uids of each ClientIDsByUIDs call
	binds    []string            // "client_id=uid" of each successful BindUID
	failUID  map[string]error    // SendToUID and SendToAll fail when they target one of these uids
	// lookupErr, when set, makes ClientIDsByUIDs fail with it.
	lookupErr error
	bindErr   error    // BindUID fails with this error
	problems  []string // contract violations seen by the fake
	// onSendToUID, when set, runs at the start of every SendToUID call
	// (and SendToAll call to client_ids, with their uids), before anything
	// is delivered, without the fake's lock held.
	onSendToUID func(uids []string, data []byte)
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

// setFailUID makes SendToUID fail with err when it targets uid (nil: stop
// failing).
func (f *fakeAPI) setFailUID(uid string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.failUID, uid)
	} else {
		f.failUID[uid] = err
	}
}

func (f *fakeAPI) setOnSendToUID(fn func(uids []string, data []byte)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onSendToUID = fn
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
	hook := f.onSendToUID
	f.mu.Unlock()
	if hook != nil {
		hook(slices.Clone(uids), slices.Clone(data))
	}
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

// ClientIDsByUIDs returns the connected clients bound to each of uids.
func (f *fakeAPI) ClientIDsByUIDs(ctx context.Context, uids []string) (map[string][]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.check(ctx, "ClientIDsByUIDs")
	f.lookups = append(f.lookups, slices.Clone(uids))
	if f.lookupErr != nil {
		return nil, f.lookupErr
	}
	out := map[string][]string{}
	for id, uid := range f.conns {
		if uid != "" && slices.Contains(uids, uid) {
			out[uid] = append(out[uid], id)
		}
	}
	return out, nil
}

// SendToAll supports only the form the chat uses: a send to the listed
// client_ids, none excluded. It counts as a send to their uids.
func (f *fakeAPI) SendToAll(ctx context.Context, data []byte, binary bool, clientIDs, exclude []string) (int, error) {
	f.mu.Lock()
	var uids []string
	for _, id := range clientIDs {
		if uid, ok := f.conns[id]; ok && uid != "" && !slices.Contains(uids, uid) {
			uids = append(uids, uid)
		}
	}
	if len(clientIDs) == 0 || len(exclude) > 0 {
		f.problems = append(f.problems, "SendToAll to everyone or with exclusions")
	}
	hook := f.onSendToUID
	f.mu.Unlock()
	if hook != nil {
		hook(slices.Clone(uids), slices.Clone(data))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.check(ctx, "SendToAll")
	if binary {
		f.problems = append(f.problems, "binary SendToAll")
	}
	f.uidSends = append(f.uidSends, uids)
	for _, uid := range uids {
		if err := f.failUID[uid]; err != nil {
			return 0, err
		}
	}
	n := 0
	for _, id := range clientIDs {
		if _, ok := f.conns[id]; ok {
			f.frames[id] = append(f.frames[id], string(data))
			n++
		}
	}
	return n, nil
}

// Post is SendToAll to clientIDs without the count; none is no call.
func (f *fakeAPI) Post(ctx context.Context, clientIDs []string, data []byte, binary bool) error {
	if len(clientIDs) == 0 {
		return nil
	}
	_, err := f.SendToAll(ctx, data, binary, clientIDs, nil)
	return err
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

func (f *fakeAPI) lookupsDone() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lookups)
}

func (f *fakeAPI) bindsDone() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.binds)
}

// faultyStore wraps a real store and fails the methods set to fail.
type faultyStore struct {
	store.Store

	mu   sync.Mutex
	fail map[string]error // method name → error
}

func newFaultyStore(st store.Store) *faultyStore {
	return &faultyStore{Store: st, fail: map[string]error{}}
}

// setFail makes method fail with err (nil: stop failing).
func (s *faultyStore) setFail(method string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.fail, method)
	} else {
		s.fail[method] = err
	}
}

func (s *faultyStore) err(method string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail[method]
}

func (s *faultyStore) SaveMessages(ctx context.Context, msgs []store.NewMessage) ([]store.Saved, error) {
	if err := s.err("SaveMessages"); err != nil {
		return nil, err
	}
	return s.Store.SaveMessages(ctx, msgs)
}

func (s *faultyStore) History(ctx context.Context, a, b string, p store.Page) ([]store.Message, error) {
	if err := s.err("History"); err != nil {
		return nil, err
	}
	return s.Store.History(ctx, a, b, p)
}

func (s *faultyStore) MarkRead(ctx context.Context, reader, peer string, upTo int64) (int64, error) {
	if err := s.err("MarkRead"); err != nil {
		return 0, err
	}
	return s.Store.MarkRead(ctx, reader, peer, upTo)
}

func (s *faultyStore) UnreadCounts(ctx context.Context, uid string) (map[string]int, error) {
	if err := s.err("UnreadCounts"); err != nil {
		return nil, err
	}
	return s.Store.UnreadCounts(ctx, uid)
}

func (s *faultyStore) Users(ctx context.Context, uids ...string) (map[string]store.User, error) {
	if err := s.err("Users"); err != nil {
		return nil, err
	}
	return s.Store.Users(ctx, uids...)
}

// lockedBuffer is a bytes.Buffer safe for the Handler's background
// goroutines to log into while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testZone is the Location of the harness's Handlers: message dates are the
// stored CreatedAt in this zone.
var testZone = time.FixedZone("CST", 8*60*60)

// openTestStore opens a real SQLite store in a fresh file, closed when tb
// ends.
func openTestStore(tb testing.TB) *store.SQLite {
	tb.Helper()
	db, err := store.OpenSQLite(context.Background(), filepath.Join(tb.TempDir(), "chat.db"))
	if err != nil {
		tb.Fatalf("open sqlite store: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return db
}

type harness struct {
	h   *Handler
	api *fakeAPI
	db  *store.SQLite // the real store under the Handler's
	log *lockedBuffer
	ctx context.Context

	closeOnce sync.Once
}

// testSecret signs the bind tokens of tests.
var testSecret = []byte("chat-test-secret-0123456789abcdef")

// newHarness builds a Handler with InsecureBind as given on a fresh SQLite
// store, a fake API and a debug log captured in a buffer. It fails the test
// at the end if the fake saw a contract violation.
func newHarness(t testing.TB, insecureBind bool) *harness {
	t.Helper()
	db := openTestStore(t)
	return newHarnessOn(t, insecureBind, db, db)
}

// newHarnessOn is newHarness on the store st, which is db or wraps it.
// The Handler is closed when t ends, before db is (unless x.close ran
// earlier).
//
// A retry may deliver a message as soon as its first say is done
// (RetrySettle 1ns), unless the test builds its harness with
// newHarnessWith.
func newHarnessOn(t testing.TB, insecureBind bool, db *store.SQLite, st store.Store) *harness {
	t.Helper()
	return newHarnessWith(t, db, st, Config{InsecureBind: insecureBind, RetrySettle: time.Nanosecond})
}

// newHarnessWith is newHarnessOn with the Handler's Config cfg, whose
// Tokens, Location and Timeout it sets.
func newHarnessWith(t testing.TB, db *store.SQLite, st store.Store, cfg Config) *harness {
	t.Helper()
	tokens, err := bindtoken.NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tokens, cfg.Location, cfg.Timeout = tokens, testZone, 2*time.Second
	api := newFakeAPI(cfg.Timeout)
	logBuf := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	x := &harness{
		h:   New(cfg, api, st, log),
		api: api,
		db:  db,
		log: logBuf,
		ctx: context.WithValue(context.Background(), ctxKey{}, "handler ctx"),
	}
	t.Cleanup(func() {
		x.close()
		api.mu.Lock()
		defer api.mu.Unlock()
		for _, p := range api.problems {
			t.Errorf("fake API: %s", p)
		}
	})
	return x
}

// close closes the Handler, flushing its background writers; later calls do
// nothing.
func (x *harness) close() {
	x.closeOnce.Do(x.h.Close)
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
// and ref and no cmid.
func (x *harness) wantError(t *testing.T, clientID, code, ref string) {
	t.Helper()
	x.wantErrorCMID(t, clientID, code, ref, "")
}

// wantErrorCMID is wantError for an error frame that names cmid.
func (x *harness) wantErrorCMID(t *testing.T, clientID, code, ref, cmid string) string {
	t.Helper()
	got := x.api.received(clientID)
	if len(got) != 1 {
		t.Fatalf("%s received %d frames %q, want one error frame", clientID, len(got), got)
	}
	checkErrorFrameCMID(t, got[0], code, ref, cmid)
	return got[0]
}

func checkErrorFrame(t *testing.T, frame, code, ref string) {
	t.Helper()
	checkErrorFrameCMID(t, frame, code, ref, "")
}

func checkErrorFrameCMID(t *testing.T, frame, code, ref, cmid string) {
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
	if gotCMID, _ := e["cmid"].(string); gotCMID != cmid {
		t.Errorf("got %s, want cmid %q", frame, cmid)
	}
	wantFields := 3 // type, code, message
	if ref != "" {
		wantFields++
	}
	if cmid != "" {
		wantFields++
	}
	if !strings.HasPrefix(frame, `{"type":"error","code":`) || len(e) != wantFields {
		t.Errorf("error frame %s does not have exactly the fields type, code, message (and ref, cmid when known) in order", frame)
	}
}

// decode unmarshals a frame into a map, failing the test if it is not a
// JSON object.
func decode(t testing.TB, frame string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(frame), &v); err != nil || v == nil {
		t.Fatalf("frame %q is not a JSON object: %v", frame, err)
	}
	return v
}

// msgIDOf returns the msg_id of a text or save frame.
func msgIDOf(t testing.TB, frame string) int64 {
	t.Helper()
	var v struct {
		MsgID *int64 `json:"msg_id"`
	}
	if err := json.Unmarshal([]byte(frame), &v); err != nil || v.MsgID == nil || *v.MsgID <= 0 {
		t.Fatalf("frame %s has no positive msg_id (%v)", frame, err)
	}
	return *v.MsgID
}

// conversation returns every stored message between a and b, oldest first.
func (x *harness) conversation(t testing.TB, a, b string) []store.Message {
	t.Helper()
	msgs, err := x.db.History(context.Background(), a, b, store.Page{Limit: 100})
	if err != nil {
		t.Fatalf("History(%s, %s): %v", a, b, err)
	}
	return msgs
}

// stored returns the stored message id of the conversation a–b, failing the
// test if there is none.
func (x *harness) stored(t testing.TB, a, b string, id int64) store.Message {
	t.Helper()
	m, ok := x.lookup(t, a, b, id)
	if !ok {
		t.Fatalf("message %d of %s/%s is not in the store", id, a, b)
	}
	return m
}

func (x *harness) lookup(t testing.TB, a, b string, id int64) (store.Message, bool) {
	t.Helper()
	msgs, err := x.db.History(context.Background(), a, b, store.Page{After: id - 1, Before: id + 1, Limit: 1})
	if err != nil {
		t.Fatalf("History(%s, %s) around %d: %v", a, b, id, err)
	}
	if len(msgs) != 1 || msgs[0].ID != id {
		return store.Message{}, false
	}
	return msgs[0], true
}

// unread returns the store's unread counts of uid.
func (x *harness) unread(t testing.TB, uid string) map[string]int {
	t.Helper()
	counts, err := x.db.UnreadCounts(context.Background(), uid)
	if err != nil {
		t.Fatalf("UnreadCounts(%s): %v", uid, err)
	}
	return counts
}

// waitDelivered waits until the store's Delivered flag of message id is
// set: the Handler's background marker writes it after the delivery.
func (x *harness) waitDelivered(t testing.TB, a, b string, id int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !x.stored(t, a, b, id).Delivered {
		if time.Now().After(deadline) {
			t.Fatalf("message %d never marked delivered", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dateOf is the date the Handler must send for m: its CreatedAt in testZone.
func dateOf(m store.Message) string {
	return m.CreatedAt.In(testZone).Format(dateLayout)
}

// checkCreatedAt fails unless m was stored between from and to.
func checkCreatedAt(t testing.TB, m store.Message, from, to time.Time) {
	t.Helper()
	if m.CreatedAt.Before(from.Truncate(time.Microsecond)) || m.CreatedAt.After(to) {
		t.Errorf("message %d CreatedAt %v, want between %v and %v", m.ID, m.CreatedAt, from, to)
	}
}

// sayFrame builds a say request; cmid "" leaves the field out.
func sayFrame(from, to, data, cmid string) string {
	v := map[string]string{"type": "say", "frontId": from, "toId": to, "data": data}
	if cmid != "" {
		v["cmid"] = cmid
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// jsonString is s as a JSON string literal, HTML characters unescaped like
// the Handler's frames.
func jsonString(s string) string {
	b, err := EncodeFrame(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// wantMessageFrame is the exact text ("text"), save ("save", with isRead
// and cmid) frame the Handler sends for m, sent by connection clientID.
func wantMessageFrame(typ, clientID string, m store.Message, isRead int, cmid string) string {
	s := `{"type":"` + typ + `","id":` + jsonString(clientID) + `,"frontId":` + jsonString(m.From) +
		`,"toId":` + jsonString(m.To) + `,"date":"` + dateOf(m) + `","data":` + jsonString(escapeText(m.Text)) +
		`,"raw":` + jsonString(m.Text) + `,"msg_id":` + strconv.FormatInt(m.ID, 10)
	if typ == "save" {
		s += `,"is_read":` + strconv.Itoa(isRead)
		if cmid != "" {
			s += `,"cmid":` + jsonString(cmid)
		}
	}
	return s + "}"
}

func TestNewDefaults(t *testing.T) {
	db := openTestStore(t)
	h := New(Config{}, newFakeAPI(time.Second), db, nil)
	defer h.Close()
	if h.timeout != 5*time.Second || h.retrySettle != 2*time.Second || h.loc != time.Local || h.log == nil || h.insecureBind || h.store != db {
		t.Errorf("New(Config{}) = %+v, want 5s timeout, 2s retry settle, time.Local, a discard logger, secure bind, the store", h)
	}
	h2 := New(Config{Timeout: -time.Second}, newFakeAPI(time.Second), db, nil)
	defer h2.Close()
	if h2.timeout != 5*time.Second {
		t.Errorf("negative Timeout became %v, want 5s", h2.timeout)
	}
	// A nil logger must be usable: this logs a refusal.
	h2.OnMessage(context.Background(), &worker.Client{ID: "c1"}, worker.Message{Data: []byte("x")})
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
	if binds := x.api.bindsDone(); len(binds) != 0 {
		t.Errorf("binds %v, want none", binds)
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
			wantBind: "c1=85", wantFrame: `{"type":"bound","client_id":"c1","frontId":"85","unread":{}}`},
		{name: "integer frontId", frame: `{"type":"bind","client_id":"c1","frontId":85}`,
			wantBind: "c1=85", wantFrame: `{"type":"bound","client_id":"c1","frontId":"85","unread":{}}`},
		{name: "without client_id", frame: `{"type":"bind","frontId":"用户"}`,
			wantBind: "c1=用户", wantFrame: `{"type":"bound","client_id":"c1","frontId":"用户","unread":{}}`},
		{name: "uid 0", frame: `{"type":"bind","frontId":0}`,
			wantBind: "c1=0", wantFrame: `{"type":"bound","client_id":"c1","frontId":"0","unread":{}}`},
		{name: "a token given is checked", frame: `{"type":"bind","frontId":"85","token":"t"}`, wantCode: "token_invalid"},
		{name: "uid the store rejects still binds", frame: `{"type":"bind","frontId":"` + strings.Repeat("u", 300) + `"}`,
			wantBind: "c1=" + strings.Repeat("u", 300), wantFrame: `{"type":"bound","client_id":"c1","frontId":"` + strings.Repeat("u", 300) + `","unread":{}}`},
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
			if binds := x.api.bindsDone(); !slices.Equal(binds, want) {
				t.Errorf("binds %v, want %v", binds, want)
			}
		})
	}
}

// TestBindShowsUnreadOfOfflineUID: messages to a uid with no connection
// wait unread, and its next bind counts them per sender.
func TestBindShowsUnreadOfOfflineUID(t *testing.T) {
	x := newHarness(t, true)
	a := x.api.connect("ca", "85")
	z := x.api.connect("cz", "87")
	x.send(a, sayFrame("85", "86", "one", ""))
	x.send(a, sayFrame("85", "86", "two", "m2"))
	x.send(z, sayFrame("87", "86", "three", ""))
	x.send(a, sayFrame("85", "89", "not for 86", ""))
	for _, id := range []string{"ca", "cz"} {
		for _, f := range x.api.received(id) {
			if v := decode(t, f); v["type"] == "save" && v["is_read"] != 0.0 {
				t.Errorf("%s got %s, want is_read 0 for a message to an offline uid", id, f)
			}
		}
	}

	b := x.api.connect("cb", "")
	x.send(b, `{"type":"bind","frontId":"86"}`)
	x.wantFrames(t, "cb", `{"type":"bound","client_id":"cb","frontId":"86","unread":{"85":2,"87":1}}`)
	// 85 has nothing unread: the map is present and empty.
	a2 := x.api.connect("ca2", "")
	x.send(a2, `{"type":"bind","frontId":"85"}`)
	x.wantFrames(t, "ca2", `{"type":"bound","client_id":"ca2","frontId":"85","unread":{}}`)
}

// TestBindWhenUnreadCountsFail: the bind holds and the counts are empty.
func TestBindWhenUnreadCountsFail(t *testing.T) {
	db := openTestStore(t)
	st := newFaultyStore(db)
	st.setFail("UnreadCounts", errors.New("disk on fire"))
	x := newHarnessOn(t, true, db, st)
	c := x.api.connect("c1", "")
	x.send(c, `{"type":"bind","frontId":"85"}`)
	x.wantFrames(t, "c1", `{"type":"bound","client_id":"c1","frontId":"85","unread":{}}`)
	if logs := x.log.String(); !strings.Contains(logs, "disk on fire") || !strings.Contains(logs, `"level":"WARN"`) {
		t.Errorf("log %s lacks the UnreadCounts failure", logs)
	}
}

func TestSayDeliversTextAndSavesToEverySenderDevice(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c1-phone", "85") // the sender's second device
	x.api.connect("c2", "86")
	x.api.connect("c2-phone", "86")
	x.api.connect("c3", "87")

	start := time.Now()
	x.send(sender, `{"data":"你好 <b>\"x\" & 'y'\r\nbye\n","type":"say","frontId":"85","toId":"86"}`)
	end := time.Now()

	got := x.api.received("c2")
	if len(got) != 1 {
		t.Fatalf("c2 received %q, want one text", got)
	}
	id := msgIDOf(t, got[0])
	m := x.stored(t, "85", "86", id)
	checkCreatedAt(t, m, start, end)
	date := dateOf(m)
	if utc := m.CreatedAt.UTC().Format(dateLayout); date == utc {
		t.Fatalf("date %s is the UTC date: the test zone is not in effect", date)
	}
	body := `"id":"c1","frontId":"85","toId":"86","date":"` + date + `",` +
		`"data":"你好 &lt;b&gt;&quot;x&quot; &amp; &#039;y&#039;<br />\r\nbye<br />\n",` +
		`"raw":"你好 <b>\"x\" & 'y'\r\nbye\n","msg_id":` + strconv.FormatInt(id, 10)
	text := `{"type":"text",` + body + `}`
	save := `{"type":"save",` + body + `,"is_read":1}`
	if got[0] != text {
		t.Errorf("c2 received\n%s\nwant\n%s", got[0], text)
	}
	x.wantFrames(t, "c2-phone", text)
	x.wantFrames(t, "c1", save)
	x.wantFrames(t, "c1-phone", save)
	x.wantFrames(t, "c3")
	if got, want := x.api.sendsToUID(), [][]string{{"86"}, {"85"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("SendToUID calls %v, want %v", got, want)
	}
	if m.From != "85" || m.To != "86" || m.Text != "你好 <b>\"x\" & 'y'\r\nbye\n" || m.Kind != store.KindText || m.CMID != "" {
		t.Errorf("stored %+v, want the raw text from 85 to 86, kind text, no cmid", m)
	}
	x.waitDelivered(t, "85", "86", id)
}

// TestSayPersistsBeforeDelivering checks, from inside the API, that the
// message a text frame carries is already in the store when the frame is
// handed on, and that the save follows the text.
func TestSayPersistsBeforeDelivering(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c2", "86")
	var calls []string
	x.api.setOnSendToUID(func(uids []string, data []byte) {
		v := decode(t, string(data))
		typ, _ := v["type"].(string)
		calls = append(calls, typ)
		id := msgIDOf(t, string(data))
		m, ok := x.lookup(t, "85", "86", id)
		if !ok {
			t.Errorf("%s frame with msg_id %d sent to %v before the message was stored", typ, id, uids)
			return
		}
		if m.Text != v["raw"] || m.From != "85" || m.To != "86" {
			t.Errorf("%s frame %s does not match stored %+v", typ, data, m)
		}
		if v["date"] != dateOf(m) {
			t.Errorf("%s frame date %v, want the stored CreatedAt in the zone, %s", typ, v["date"], dateOf(m))
		}
	})
	for i := range 3 {
		x.send(sender, sayFrame("85", "86", fmt.Sprintf("message %d", i), ""))
	}
	if want := []string{"text", "save", "text", "save", "text", "save"}; !slices.Equal(calls, want) {
		t.Errorf("SendToUID frame types %v, want %v", calls, want)
	}
	// Ids increase in sending order.
	var ids []int64
	for _, f := range x.api.received("c2") {
		ids = append(ids, msgIDOf(t, f))
	}
	if len(ids) != 3 || !slices.IsSorted(ids) || ids[0] == ids[1] || ids[1] == ids[2] {
		t.Errorf("msg_ids %v, want three increasing ids", ids)
	}
}

func TestSayToOfflineUIDSavesUnread(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.send(sender, `{"type":"say","frontId":"85","toId":"86","data":"anyone?"}`)
	got := x.api.received("c1")
	if len(got) != 1 {
		t.Fatalf("c1 received %q, want one save", got)
	}
	m := x.stored(t, "85", "86", msgIDOf(t, got[0]))
	if want := wantMessageFrame("save", "c1", m, 0, ""); got[0] != want {
		t.Errorf("c1 received\n%s\nwant\n%s", got[0], want)
	}
	// One lookup finds no connection of 86: nothing is sent to it.
	if got := x.api.lookupsDone(); len(got) != 1 || !slices.Contains(got[0], "86") || !slices.Contains(got[0], "85") {
		t.Errorf("ClientIDsByUIDs calls %v, want one of 85 and 86", got)
	}
	if got, want := x.api.sendsToUID(), [][]string{{"85"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("sends %v, want only the save to 85", got)
	}
	if got := x.unread(t, "86"); got["85"] != 1 || len(got) != 1 {
		t.Errorf("unread of 86 = %v, want {85:1}", got)
	}
	x.close() // flushes the delivered marker
	if m := x.stored(t, "85", "86", m.ID); m.Delivered {
		t.Errorf("undelivered message %d marked delivered", m.ID)
	}
}

func TestSayAcceptsIntegerUIDs(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c2", "86")
	x.send(sender, `{"type":"say","frontId":85,"toId":86,"data":""}`)
	got := x.api.received("c2")
	if len(got) != 1 {
		t.Fatalf("c2 received %q, want one text", got)
	}
	m := x.stored(t, "85", "86", msgIDOf(t, got[0]))
	date := dateOf(m)
	id := strconv.FormatInt(m.ID, 10)
	if want := `{"type":"text","id":"c1","frontId":"85","toId":"86","date":"` + date + `","data":"","raw":"","msg_id":` + id + `}`; got[0] != want {
		t.Errorf("c2 received\n%s\nwant\n%s", got[0], want)
	}
	x.wantFrames(t, "c1", `{"type":"save","id":"c1","frontId":"85","toId":"86","date":"`+date+`","data":"","raw":"","msg_id":`+id+`,"is_read":1}`)
}

func TestSayToSelf(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.send(sender, `{"type":"say","frontId":"85","toId":"85","data":"note"}`)
	got := x.api.received("c1")
	if len(got) != 2 || !strings.HasPrefix(got[0], `{"type":"text"`) || !strings.HasSuffix(got[1], `"is_read":1}`) {
		t.Fatalf("received %q, want the text and a save with is_read 1", got)
	}
	if msgIDOf(t, got[0]) != msgIDOf(t, got[1]) {
		t.Errorf("text %s and save %s carry different msg_ids", got[0], got[1])
	}
	if msgs := x.conversation(t, "85", "85"); len(msgs) != 1 || msgs[0].Text != "note" {
		t.Errorf("stored %+v, want the one note", msgs)
	}
}

func TestSayRefused(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name     string
		uid      string // the sender connection's uid
		frame    string
		wantCode string
		wantCMID string
	}{
		{"unbound", "", `{"type":"say","frontId":"85","toId":"86","data":"hi"}`, "not_bound", ""},
		{"unbound with cmid", "", `{"type":"say","frontId":"85","toId":"86","data":"hi","cmid":"m1"}`, "not_bound", ""},
		{"unbound without fields", "", `{"type":"say"}`, "not_bound", ""},
		{"forged frontId", "85", `{"type":"say","frontId":"86","toId":"87","data":"hi"}`, "forbidden", ""},
		{"forged frontId with cmid", "85", `{"type":"say","frontId":"86","toId":"87","data":"hi","cmid":"m1"}`, "forbidden", "m1"},
		{"forged integer frontId", "85", `{"type":"say","frontId":86,"toId":"86","data":"hi"}`, "forbidden", ""},
		{"frontId differs by case", "abc", `{"type":"say","frontId":"ABC","toId":"86","data":"hi"}`, "forbidden", ""},
		{"widget visitor", "v_0123456789abcdef01234567", `{"type":"say","frontId":"v_0123456789abcdef01234567","toId":"86","data":"hi","cmid":"m1"}`, "forbidden", "m1"},
		{"missing frontId", "85", `{"type":"say","toId":"86","data":"hi"}`, "missing_field", ""},
		{"missing toId", "85", `{"type":"say","frontId":"85","data":"hi"}`, "missing_field", ""},
		{"empty toId", "85", `{"type":"say","frontId":"85","toId":"","data":"hi"}`, "missing_field", ""},
		{"bool toId", "85", `{"type":"say","frontId":"85","toId":false,"data":"hi"}`, "invalid_field", ""},
		{"float toId", "85", `{"type":"say","frontId":"85","toId":86.0,"data":"hi"}`, "invalid_field", ""},
		{"exponent toId", "85", `{"type":"say","frontId":"85","toId":8.6e1,"data":"hi"}`, "invalid_field", ""},
		{"huge toId", "85", `{"type":"say","frontId":"85","toId":99999999999999999999,"data":"hi"}`, "invalid_field", ""},
		{"null toId", "85", `{"type":"say","frontId":"85","toId":null,"data":"hi"}`, "invalid_field", ""},
		{"object toId", "85", `{"type":"say","frontId":"85","toId":{},"data":"hi"}`, "invalid_field", ""},
		{"array toId", "85", `{"type":"say","frontId":"85","toId":["86"],"data":"hi"}`, "invalid_field", ""},
		{"missing data", "85", `{"type":"say","frontId":"85","toId":"86"}`, "missing_field", ""},
		{"numeric data", "85", `{"type":"say","frontId":"85","toId":"86","data":42}`, "invalid_field", ""},
		{"null data", "85", `{"type":"say","frontId":"85","toId":"86","data":null}`, "invalid_field", ""},
		{"object data", "85", `{"type":"say","frontId":"85","toId":"86","data":{"text":"hi"}}`, "invalid_field", ""},
		{"numeric cmid", "85", `{"type":"say","frontId":"85","toId":"86","data":"hi","cmid":7}`, "invalid_field", ""},
		{"object cmid", "85", `{"type":"say","frontId":"85","toId":"86","data":"hi","cmid":{}}`, "invalid_field", ""},
		{"cmid over 64 bytes", "85", `{"type":"say","frontId":"85","toId":"86","data":"hi","cmid":"` + strings.Repeat("c", 65) + `"}`, "invalid_field", ""},
		{"cmid over 64 bytes in runes", "85", `{"type":"say","frontId":"85","toId":"86","data":"hi","cmid":"` + strings.Repeat("消", 22) + `"}`, "invalid_field", ""},
		// Refused by the store's validation, before anything is written.
		{"NUL in data", "85", `{"type":"say","frontId":"85","toId":"86","data":"a\u0000b","cmid":"m1"}`, "invalid_field", "m1"},
		{"data over 16 KiB", "85", `{"type":"say","frontId":"85","toId":"86","data":"` + strings.Repeat("d", store.MaxTextBytes+1) + `"}`, "invalid_field", ""},
		{"toId over 255 bytes", "85", `{"type":"say","frontId":"85","toId":"` + long + `","data":"hi"}`, "invalid_field", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			c := x.api.connect("c1", tt.uid)
			x.api.connect("c2", "86")
			x.api.connect("c3", "87")
			x.send(c, tt.frame)
			x.wantErrorCMID(t, "c1", tt.wantCode, "say", tt.wantCMID)
			x.wantFrames(t, "c2")
			x.wantFrames(t, "c3")
			if sends := x.api.sendsToUID(); len(sends) != 0 {
				t.Errorf("SendToUID calls %v, want none", sends)
			}
			for _, uid := range []string{"85", "86", "87", "abc"} {
				if got := x.unread(t, uid); len(got) != 0 {
					t.Errorf("a refused say stored messages: unread of %s = %v", uid, got)
				}
			}
		})
	}
}

// TestSayAcceptsCMIDUpTo64Bytes: the limit is inclusive; null and "" mean
// no cmid.
func TestSayAcceptsCMIDUpTo64Bytes(t *testing.T) {
	for _, tt := range []struct{ name, field, want string }{
		{"64 bytes", `"cmid":"` + strings.Repeat("c", 64) + `"`, strings.Repeat("c", 64)},
		{"63 bytes of runes", `"cmid":"` + strings.Repeat("消", 21) + `"`, strings.Repeat("消", 21)},
		{"null", `"cmid":null`, ""},
		{"empty", `"cmid":""`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			c := x.api.connect("c1", "85")
			x.send(c, `{"type":"say","frontId":"85","toId":"86","data":"hi",`+tt.field+`}`)
			got := x.api.received("c1")
			if len(got) != 1 {
				t.Fatalf("c1 received %q, want one save", got)
			}
			m := x.stored(t, "85", "86", msgIDOf(t, got[0]))
			if m.CMID != tt.want {
				t.Errorf("stored cmid %q, want %q", m.CMID, tt.want)
			}
			if want := wantMessageFrame("save", "c1", m, 0, tt.want); got[0] != want {
				t.Errorf("c1 received\n%s\nwant\n%s", got[0], want)
			}
		})
	}
}

func TestSayDeliveryFailureSavesUnread(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c1-phone", "85")
	x.api.connect("c2", "86")
	x.api.setFailUID("86", fmt.Errorf("gateway g1: %w", worker.ErrUnavailable))
	x.send(sender, `{"type":"say","frontId":"85","toId":"86","data":"top secret body","cmid":"m1"}`)
	got := x.api.received("c1")
	if len(got) != 1 {
		t.Fatalf("c1 received %q, want one save", got)
	}
	m := x.stored(t, "85", "86", msgIDOf(t, got[0]))
	save := wantMessageFrame("save", "c1", m, 0, "m1")
	if got[0] != save {
		t.Errorf("c1 received\n%s\nwant\n%s", got[0], save)
	}
	x.wantFrames(t, "c1-phone", save)
	x.wantFrames(t, "c2")
	if got, want := x.api.sendsToUID(), [][]string{{"86"}, {"85"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("SendToUID calls %v, want %v", got, want)
	}
	if got := x.unread(t, "86"); got["85"] != 1 || len(got) != 1 {
		t.Errorf("unread of 86 = %v, want {85:1}", got)
	}
	logs := x.log.String()
	for _, want := range []string{`"client_id":"c1"`, `"uid":"85"`, `"msg_id":` + strconv.FormatInt(m.ID, 10),
		`"err":"gateway g1: unavailable"`, `"level":"WARN"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log %s lacks %s", logs, want)
		}
	}
	if strings.Contains(logs, "top secret") {
		t.Errorf("log %s contains the message body", logs)
	}

	// The recipient sees it through history, unread.
	r := &worker.Client{ID: "c2", UID: "86"}
	x.send(r, `{"type":"history","toId":"85"}`)
	hist := x.api.received("c2")
	if len(hist) != 1 || !strings.Contains(hist[0], `"msg_id":`+strconv.FormatInt(m.ID, 10)) || !strings.Contains(hist[0], `"is_read":0`) {
		t.Errorf("recipient history %q, want message %d unread", hist, m.ID)
	}

	// A retry once the gateway is back delivers the waiting message.
	x.api.setFailUID("86", nil)
	x.send(sender, `{"type":"say","frontId":"85","toId":"86","data":"top secret body","cmid":"m1"}`)
	x.wantFrames(t, "c2", wantMessageFrame("text", "c1", m, 0, ""))
	x.wantFrames(t, "c1", wantMessageFrame("save", "c1", m, 1, "m1"))
	if msgs := x.conversation(t, "85", "86"); len(msgs) != 1 {
		t.Errorf("stored %d messages, want 1", len(msgs))
	}
}

func TestSaySaveFailureIsLoggedOnly(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c2", "86")
	x.api.setFailUID("85", worker.ErrUnavailable)
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
		{"receipt type from a client", `{"type":"receipt","frontId":"85","toId":"86","upTo":1}`, false, "unknown_type", "receipt"},
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
			if msgs := x.conversation(t, "85", "86"); len(msgs) != 0 {
				t.Errorf("garbage stored %+v", msgs)
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
		x.wantFrames(t, c.conn.ID, `{"type":"bound","client_id":"`+c.conn.ID+`","frontId":"`+c.uid+`","unread":{}}`)
		c.conn.UID = c.uid // the worker reports the new uid with the next event
	}
	x.send(a, `{"data":"在吗?","type":"say","frontId":"85","toId":"86"}`)
	frames := x.api.received("cb")
	if len(frames) != 1 {
		t.Fatalf("cb got %q, want one text frame", frames)
	}
	text := decode(t, frames[0])
	m := x.stored(t, "85", "86", msgIDOf(t, frames[0]))
	if text["type"] != "text" || text["frontId"] != "85" || text["data"] != "在吗?" || text["date"] != dateOf(m) {
		t.Errorf("cb got %v, want the text dated %s", text, dateOf(m))
	}
}

// FuzzOnMessage feeds arbitrary frames to bound and unbound connections and
// checks that nothing panics, that every frame sent is a JSON object with a
// type, that replies go to the asking connection only and that nothing is
// ever delivered on behalf of another uid. All inputs share one store.
func FuzzOnMessage(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"type":"bind","client_id":"c1","frontId":"85"}`,
		`{"type":"bind","frontId":85}`, `{"type":"say","frontId":"85","toId":"86","data":"<a>\r\n"}`,
		`{"type":"say","frontId":"86","toId":"85","data":"x"}`, `{"type":"say","frontId":85,"toId":86,"data":"\ud800"}`,
		`{"type":"say","frontId":"85","toId":"86","data":"` + "\xe4\xb8" + `"}`, `{"type":5}`, `{"type":"x"}`,
		`{"type":"say","frontId":"85","toId":"0","data":"x","cmid":"c-1"}`,
		`{"type":"say","frontId":"85","toId":"86","data":"a\u0000b"}`,
		`{"type":"history","toId":"86"}`, `{"type":"history","toId":86,"limit":50,"before":3}`,
		`{"type":"history","toId":"86","after":1,"limit":2}`, `{"type":"history","toId":"86","before":1,"after":1}`,
		`{"type":"read","toId":"86","upTo":5}`, `{"type":"read","toId":"0","upTo":0}`,
		`{"type":"profile","toId":"86"}`, `{"type":"profile","toId":"a/b c"}`,
	} {
		f.Add([]byte(s), false, true)
		f.Add([]byte(s), false, false)
	}
	f.Add([]byte{0xff, 0x00}, true, true)
	db := openTestStore(f)
	// Messages from 86 and 0 to 85 give reads something to mark.
	if _, err := db.SaveMessages(context.Background(), []store.NewMessage{
		{From: "86", To: "85", Text: "hi", Kind: store.KindText},
		{From: "0", To: "85", Text: "hi", Kind: store.KindText},
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, binary, bound bool) {
		x := newHarnessOn(t, true, db, db)
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
				case "error", "history", "profile":
					if id != "c1" {
						t.Fatalf("%s frame %s sent to %s", typ, frame, id)
					}
				case "text", "save", "receipt":
					if v["frontId"] != "85" || !bound {
						t.Fatalf("%s frame %s sent on behalf of another uid (sender bound %v)", typ, frame, bound)
					}
				case "bound":
					if v["client_id"] != "c1" || id != "c1" {
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
