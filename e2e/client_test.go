package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatewire/gatewire/internal/bearer"
	pushv1 "github.com/gatewire/gatewire/proto/gatewire/push/v1"
)

// frameTimeout is how long a client waits for a frame it expects. It is
// generous: it bounds a wait, it does not measure speed.
const frameTimeout = 5 * time.Second

// quietPeriod is how long a client must stay silent to pass expectNothing.
const quietPeriod = 500 * time.Millisecond

// client is a test's WebSocket connection to a gateway. One goroutine reads
// the connection all the time (so that pings are answered) and hands frames
// to the test through a channel, so that a wait for a frame can time out
// without closing the connection. Its methods fail t; call them from the
// test's goroutine only.
type client struct {
	t    *testing.T
	name string
	ws   *websocket.Conn
	id   string // client_id from the init frame
	init frame

	in        chan inbound
	quit      chan struct{} // closed by closeNow: the reader stops handing over
	done      chan struct{} // closed when the reader has returned
	closeOnce sync.Once
}

// inbound is one result of reading the connection.
type inbound struct {
	typ  websocket.MessageType
	data []byte
	err  error // the connection ended
}

// frame is one decoded JSON text frame from the server.
type frame struct {
	raw    string
	fields map[string]json.RawMessage
}

// str returns a string field, or "" when it is missing or not a string.
func (f frame) str(key string) string {
	var s string
	_ = json.Unmarshal(f.fields[key], &s)
	return s
}

func (f frame) typ() string { return f.str("type") }

// keys returns the frame's field names, sorted.
func (f frame) keys() []string {
	var ks []string
	for k := range f.fields {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// clientIDRE is the form of every client_id.
var clientIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// dial connects to the gateway at url, starts the reader and reads the
// init frame; the connection is closed when t ends.
func dial(t *testing.T, url, name string) *client {
	t.Helper()
	c, err := connect(url, name)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(c.closeNow)
	return c
}

// connect is dial without a test: it may run on any goroutine, and the
// caller must close the connection. The client's methods that fail a test
// must not be called on it.
func connect(url, name string) (*client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s: %w", name, url, err)
	}
	c := &client{
		name: name, ws: ws,
		in: make(chan inbound, 64), quit: make(chan struct{}), done: make(chan struct{}),
	}
	go c.readLoop()
	init, err := c.nextFrame(frameTimeout)
	if err == nil && init.typ() != "init" {
		err = fmt.Errorf("%s: got %s, want an \"init\" frame", name, init.raw)
	}
	if err == nil && !clientIDRE.MatchString(init.str("client_id")) {
		err = fmt.Errorf("%s: init frame %s: client_id is not 32 lowercase hex characters", name, init.raw)
	}
	if err != nil {
		c.closeNow()
		return nil, err
	}
	c.init, c.id = init, init.str("client_id")
	return c, nil
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		typ, data, err := c.ws.Read(context.Background()) // closeNow ends it
		select {
		case c.in <- inbound{typ: typ, data: data, err: err}:
		case <-c.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// closeNow closes the connection without a handshake and waits for the
// reader. It may be called more than once.
func (c *client) closeNow() {
	c.closeOnce.Do(func() {
		_ = c.ws.CloseNow() // fails only when already closed
		close(c.quit)
		<-c.done
	})
}

// close closes the connection with a normal close handshake.
func (c *client) close() {
	c.t.Helper()
	if err := c.ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		c.t.Errorf("%s: close: %v", c.name, err)
	}
	c.closeNow()
}

// sendRaw writes one frame.
func (c *client) sendRaw(typ websocket.MessageType, data string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, typ, []byte(data)); err != nil {
		c.t.Fatalf("%s: write %q: %v", c.name, data, err)
	}
}

// send writes v as a JSON text frame.
func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(websocket.MessageText, string(b))
}

// say sends the seed's say request.
func (c *client) say(from, to, data string) {
	c.t.Helper()
	c.send(map[string]string{"type": "say", "frontId": from, "toId": to, "data": data})
}

// sayCMID sends a say request with a client message id.
func (c *client) sayCMID(from, to, data, cmid string) {
	c.t.Helper()
	c.send(sayRequest(from, to, data, cmid))
}

// sayRequest is a say request with a client message id.
func sayRequest(from, to, data, cmid string) map[string]string {
	return map[string]string{"type": "say", "frontId": from, "toId": to, "data": data, "cmid": cmid}
}

// bind binds the connection to uid as the seed's client does, checks the
// bound acknowledgement and returns its unread counts per sender.
func (c *client) bind(uid string) map[string]int {
	c.t.Helper()
	c.send(map[string]string{"type": "bind", "client_id": c.id, "frontId": uid})
	unread, err := checkBound(c.expect("bound"), c.id, uid)
	if err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
	return unread
}

// checkBound checks that f is exactly the bound frame of a bind of clientID
// to uid, {"type":"bound","client_id":...,"frontId":...,"unread":{...}},
// whose unread counts are positive integers per sender uid, and returns the
// counts.
func checkBound(f frame, clientID, uid string) (map[string]int, error) {
	if got, want := f.keys(), []string{"client_id", "frontId", "type", "unread"}; !slices.Equal(got, want) {
		return nil, fmt.Errorf("bound frame %s has fields %v, want %v", f.raw, got, want)
	}
	if f.str("client_id") != clientID || f.str("frontId") != uid {
		return nil, fmt.Errorf("bound frame %s, want client_id %s and frontId %q", f.raw, clientID, uid)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(f.fields["unread"], &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("bound frame %s: unread is not a JSON object", f.raw)
	}
	unread := make(map[string]int, len(raw))
	for from, v := range raw {
		n, ok := jsonInt(v)
		if from == "" || !ok || n <= 0 {
			return nil, fmt.Errorf("bound frame %s: unread[%q] is %s, want a sender uid and a positive integer", f.raw, from, v)
		}
		unread[from] = int(n)
	}
	return unread, nil
}

// checkUnread fails t unless unread is exactly want (senders with no unread
// message are absent).
func checkUnread(t *testing.T, who string, unread, want map[string]int) {
	t.Helper()
	if !maps.Equal(unread, want) {
		t.Fatalf("%s: bound with unread %v, want %v", who, unread, want)
	}
}

// jsonIntRE is a JSON integer: no fraction, no exponent.
var jsonIntRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// jsonInt decodes a JSON integer that fits an int64.
func jsonInt(raw json.RawMessage) (int64, bool) {
	if !jsonIntRE.Match(raw) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// receive waits up to timeout for the next frame. ok is false on timeout;
// a connection that ends or a frame that is not a JSON object fails t.
func (c *client) receive(timeout time.Duration) (f frame, ok bool) {
	c.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case in := <-c.in:
		return c.decode(in), true
	case <-timer.C:
		return frame{}, false
	}
}

// decode checks that in is a JSON object in a text frame.
func (c *client) decode(in inbound) frame {
	c.t.Helper()
	f, err := decodeInbound(in)
	if err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
	return f
}

// decodeInbound checks that in is a JSON object in a text frame.
func decodeInbound(in inbound) (frame, error) {
	if in.err != nil {
		return frame{}, fmt.Errorf("connection ended: %w", in.err)
	}
	if in.typ != websocket.MessageText {
		return frame{}, fmt.Errorf("got a %v frame %q, want text", in.typ, in.data)
	}
	f := frame{raw: string(in.data)}
	if err := json.Unmarshal(in.data, &f.fields); err != nil || f.fields == nil {
		return frame{}, fmt.Errorf("frame %q is not a JSON object: %v", in.data, err)
	}
	return f, nil
}

// errNoFrame reports that no frame came within a wait.
var errNoFrame = errors.New("no frame")

// nextFrame waits up to timeout for c's next frame, without failing a test:
// it may run on any goroutine. Only one goroutine may read c at a time.
func (c *client) nextFrame(timeout time.Duration) (frame, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case in := <-c.in:
		f, err := decodeInbound(in)
		if err != nil {
			return frame{}, fmt.Errorf("%s: %w", c.name, err)
		}
		return f, nil
	case <-timer.C:
		return frame{}, fmt.Errorf("%s: %w within %v", c.name, errNoFrame, timeout)
	}
}

// pendingFrames returns the frames c has received and nobody read yet,
// without waiting, and without failing a test.
func (c *client) pendingFrames() ([]frame, error) {
	var fs []frame
	for {
		select {
		case in := <-c.in:
			f, err := decodeInbound(in)
			if err != nil {
				return fs, fmt.Errorf("%s: %w", c.name, err)
			}
			fs = append(fs, f)
		default:
			return fs, nil
		}
	}
}

// writeJSON writes v as a JSON text frame, without failing a test.
func (c *client) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("%s: write %s: %w", c.name, b, err)
	}
	return nil
}

// next returns the next frame, failing t when none arrives in frameTimeout.
func (c *client) next() frame {
	c.t.Helper()
	f, ok := c.receive(frameTimeout)
	if !ok {
		c.t.Fatalf("%s: no frame within %v", c.name, frameTimeout)
	}
	return f
}

// expect returns the next frame, which must have type typ.
func (c *client) expect(typ string) frame {
	c.t.Helper()
	f := c.next()
	if f.typ() != typ {
		c.t.Fatalf("%s: got %s, want a %q frame", c.name, f.raw, typ)
	}
	return f
}

// expectError reads an error frame and checks its code and ref (the failed
// request's type, "" when the server could not know it); it must carry no
// cmid.
func (c *client) expectError(code, ref string) frame {
	c.t.Helper()
	return c.expectErrorCMID(code, ref, "")
}

// expectErrorCMID reads an error frame and checks its code, its ref and its
// cmid (absent when cmid is "").
func (c *client) expectErrorCMID(code, ref, cmid string) frame {
	c.t.Helper()
	f := c.expect("error")
	if f.str("code") != code || f.str("ref") != ref || f.str("message") == "" {
		c.t.Fatalf("%s: got %s, want an error frame with code %q, ref %q and a message", c.name, f.raw, code, ref)
	}
	want := []string{"code", "message", "ref", "type"}
	if ref == "" {
		want = []string{"code", "message", "type"}
	}
	if cmid != "" {
		want = []string{"cmid", "code", "message", "ref", "type"}
	}
	if got := f.keys(); !slices.Equal(got, want) {
		c.t.Fatalf("%s: error frame %s has fields %v, want %v", c.name, f.raw, got, want)
	}
	if f.str("cmid") != cmid {
		c.t.Fatalf("%s: error frame %s has cmid %q, want %q", c.name, f.raw, f.str("cmid"), cmid)
	}
	return f
}

// waitFor reads frames until one satisfies match or timeout passes,
// logging the frames it skips. ok is false on timeout.
func (c *client) waitFor(timeout time.Duration, match func(frame) bool) (f frame, ok bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return frame{}, false
		}
		f, ok := c.receive(left)
		if !ok {
			return frame{}, false
		}
		if match(f) {
			return f, true
		}
		c.t.Logf("%s: skipping %s", c.name, f.raw)
	}
}

// expectEnded waits until the server ends the connection.
func (c *client) expectEnded(timeout time.Duration) {
	c.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case in := <-c.in:
			if in.err != nil {
				return
			}
			c.t.Logf("%s: skipping %q", c.name, in.data)
		case <-timer.C:
			c.t.Fatalf("%s: connection still open after %v", c.name, timeout)
		}
	}
}

// expectNothing waits quietPeriod and fails t if any of the clients got a
// frame (or lost its connection) meanwhile.
func expectNothing(t *testing.T, clients ...*client) {
	t.Helper()
	time.Sleep(quietPeriod)
	for _, c := range clients {
		select {
		case in := <-c.in:
			if in.err != nil {
				t.Fatalf("%s: connection ended, want it open and silent: %v", c.name, in.err)
			}
			t.Fatalf("%s: got %q, want nothing", c.name, in.data)
		default:
		}
	}
}

// message is what a text or save frame must carry.
type message struct {
	typ     string // "text" or "save"
	id      string // the sender's client_id
	frontID string
	toID    string
	data    string // the HTML-escaped text
	raw     string
	isRead  string // the JSON of is_read in a save frame: "0" or "1"
	cmid    string // the cmid a save frame echoes; "" when the say had none
	msgID   int64  // the msg_id it must carry; 0 means any positive one
}

// dateRE is PHP's date('Y-m-d H:i:s').
var dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$`)

// checkMessage checks that f is exactly want, with a positive integer
// msg_id and a current date in the local time zone, and returns the date and
// the msg_id.
func checkMessage(t *testing.T, who string, f frame, want message) (date string, msgID int64) {
	t.Helper()
	date, msgID, err := messageProblem(f, want)
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	return date, msgID
}

// messageProblem is checkMessage returning what is wrong instead of failing
// a test: it may run on any goroutine.
func messageProblem(f frame, want message) (date string, msgID int64, err error) {
	wantKeys := []string{"data", "date", "frontId", "id", "msg_id", "raw", "toId", "type"}
	if want.typ == "save" {
		wantKeys = []string{"data", "date", "frontId", "id", "is_read", "msg_id", "raw", "toId", "type"}
		if want.cmid != "" {
			wantKeys = []string{"cmid", "data", "date", "frontId", "id", "is_read", "msg_id", "raw", "toId", "type"}
		}
	}
	if got := f.keys(); !slices.Equal(got, wantKeys) {
		return "", 0, fmt.Errorf("%s has fields %v, want %v", f.raw, got, wantKeys)
	}
	var errs []error
	for _, fld := range []struct{ key, want string }{
		{"type", want.typ}, {"id", want.id}, {"frontId", want.frontID}, {"toId", want.toID},
		{"data", want.data}, {"raw", want.raw}, {"cmid", want.cmid},
	} {
		if got := f.str(fld.key); got != fld.want {
			errs = append(errs, fmt.Errorf("%s: %s = %q, want %q", f.raw, fld.key, got, fld.want))
		}
	}
	if want.typ == "save" {
		if got := string(f.fields["is_read"]); got != want.isRead {
			errs = append(errs, fmt.Errorf("%s: is_read is %s, want the JSON number %s", f.raw, got, want.isRead))
		}
	}
	msgID, ok := jsonInt(f.fields["msg_id"])
	switch {
	case !ok || msgID <= 0:
		errs = append(errs, fmt.Errorf("%s: msg_id is %s, want a positive JSON integer", f.raw, f.fields["msg_id"]))
	case want.msgID != 0 && msgID != want.msgID:
		errs = append(errs, fmt.Errorf("%s: msg_id is %d, want %d", f.raw, msgID, want.msgID))
	}
	date, err = checkDate(f.str("date"))
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", f.raw, err))
	}
	return date, msgID, errors.Join(errs...)
}

// checkDate checks that date is PHP's date('Y-m-d H:i:s') of a time near
// now in the local time zone.
func checkDate(date string) (string, error) {
	if !dateRE.MatchString(date) {
		return date, fmt.Errorf("date %q is not Y-m-d H:i:s", date)
	}
	at, err := time.ParseInLocation("2006-01-02 15:04:05", date, time.Local)
	if err != nil {
		return date, fmt.Errorf("date %q: %w", date, err)
	}
	if d := time.Since(at); d < -2*time.Minute || d > 2*time.Minute {
		return date, fmt.Errorf("date %q is %v away from now in the local time zone", date, d)
	}
	return date, nil
}

// plain is the message of a text without characters HTML escapes.
func plain(typ, id, from, to, text, isRead string) message {
	if strings.ContainsAny(text, "&<>\"'\r\n") {
		panic("plain: text needs escaping: " + text)
	}
	return message{typ: typ, id: id, frontID: from, toID: to, data: text, raw: text, isRead: isRead}
}

// chat sends a plain text from one client to another, checks that the
// recipient gets the text and the sender a save with is_read 1 and the same
// msg_id, and returns the msg_id.
func chat(t *testing.T, from *client, fromUID string, to *client, toUID, text string) int64 {
	t.Helper()
	from.say(fromUID, toUID, text)
	_, id := checkMessage(t, to.name, to.expect("text"), plain("text", from.id, fromUID, toUID, text, ""))
	want := plain("save", from.id, fromUID, toUID, text, "1")
	want.msgID = id
	checkMessage(t, from.name, from.expect("save"), want)
	return id
}

// sayUntilDelivered repeats a plain say from one client to another until the
// recipient gets it, for up to within: a say whose event was in flight to a
// worker that died is lost, and a gateway notices the dead link only when
// its stream breaks. It then checks the sender's save for the delivered say.
func sayUntilDelivered(t *testing.T, within time.Duration, from *client, fromUID string, to *client, toUID string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for attempt := 1; ; attempt++ {
		text := fmt.Sprintf("from %s to %s attempt %d", from.name, to.name, attempt)
		from.say(fromUID, toUID, text)
		f, ok := to.waitFor(time.Second, func(f frame) bool { return f.typ() == "text" && f.str("raw") == text })
		if ok {
			_, id := checkMessage(t, to.name, f, plain("text", from.id, fromUID, toUID, text, ""))
			save, ok := from.waitFor(frameTimeout, func(f frame) bool { return f.typ() == "save" && f.str("raw") == text })
			if !ok {
				t.Fatalf("%s: no save for %q within %v", from.name, text, frameTimeout)
			}
			want := plain("save", from.id, fromUID, toUID, text, "1")
			want.msgID = id
			checkMessage(t, from.name, save, want)
			if attempt > 1 {
				t.Logf("%s → %s delivered at attempt %d", from.name, to.name, attempt)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s → %s: no say delivered within %v (%d attempts)", from.name, to.name, within, attempt)
		}
	}
}

// pushClient returns a Push API client for the worker at addr that sends
// token as its bearer token ("" sends none). Its connection is closed when t
// ends.
func pushClient(t *testing.T, addr, token string) pushv1.PushServiceClient {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer.Credentials(token)))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatalf("push client for %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return pushv1.NewPushServiceClient(cc)
}

// isUIDOnline asks the Push API whether uid is online.
func isUIDOnline(ctx context.Context, pc pushv1.PushServiceClient, uid string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, frameTimeout)
	defer cancel()
	resp, err := pc.IsUidOnline(ctx, &pushv1.IsUidOnlineRequest{Uid: uid})
	if err != nil {
		return false, err
	}
	return resp.GetOnline(), nil
}
