package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatewire/gatewire/internal/clientid"
)

// TestCluster runs the seed's chat across a real cluster: Redis, PostgreSQL,
// a register with a 2s lease, two gateways and two workers, each its own
// process. Clients sit on different gateways, so every message crosses gateways
// through a worker. The subtests run in order on the one cluster; each dials
// its own clients and closes them when it ends. The last two kill a worker
// and a gateway with SIGKILL.
func TestCluster(t *testing.T) {
	c := startCluster(t)

	t.Run("init", func(t *testing.T) {
		// Two connections on each gateway: every one is greeted with a
		// client_id of its own, naming the gateway that holds it.
		clients := []*client{c.dial(t, 0, "a0"), c.dial(t, 0, "b0"), c.dial(t, 1, "a1"), c.dial(t, 1, "b1")}
		seen := make(map[string]string)
		for i, cl := range clients {
			if got, want := cl.init.keys(), []string{"client_id", "type"}; !slices.Equal(got, want) {
				t.Errorf("%s: init frame %s has fields %v, want %v", cl.name, cl.init.raw, got, want)
			}
			if !clientIDRE.MatchString(cl.id) {
				t.Errorf("%s: client_id %q is not 32 lowercase hex characters", cl.name, cl.id)
			}
			if other, dup := seen[cl.id]; dup {
				t.Errorf("%s and %s share client_id %s", other, cl.name, cl.id)
			}
			seen[cl.id] = cl.name
			gw, err := clientid.GatewayOf(cl.id)
			if err != nil {
				t.Fatalf("%s: client_id %s: %v", cl.name, cl.id, err)
			}
			sameGW, _ := clientid.GatewayOf(clients[i^1].id) // the other client on its gateway
			otherGW, _ := clientid.GatewayOf(clients[i^2].id)
			if gw != sameGW || gw == otherGW {
				t.Errorf("%s: client_id %s names gateway %s; its neighbour's names %s, the other gateway's client's %s",
					cl.name, cl.id, gw, sameGW, otherGW)
			}
		}
	})

	t.Run("bind", func(t *testing.T) {
		a, b := c.dial(t, 0, "a"), c.dial(t, 1, "b")
		// Nobody has sent anything yet: nothing is unread.
		checkUnread(t, "a", a.bind("85"), map[string]int{})
		checkUnread(t, "b", b.bind("86"), map[string]int{})
		// The seed's PHP clients may send the uid as a JSON integer, and may
		// leave client_id out; the ack carries the uid as a string.
		n := c.dial(t, 1, "n")
		n.sendRaw(websocket.MessageText, `{"type":"bind","frontId":87}`)
		unread, err := checkBound(n.expect("bound"), n.id, "87")
		if err != nil {
			t.Fatalf("n: %v", err)
		}
		checkUnread(t, "n", unread, map[string]int{})
		expectNothing(t, a, b, n)
	})

	t.Run("profile", func(t *testing.T) {
		// Both workers loaded the demo users into the one store.
		a := c.dial(t, 0, "a")
		a.bind("85")
		a.send(map[string]string{"type": "profile", "toId": "86"})
		f := a.expect("profile")
		if got, want := f.keys(), []string{"peer", "self", "type"}; !slices.Equal(got, want) {
			t.Fatalf("a: profile frame %s has fields %v, want %v", f.raw, got, want)
		}
		for _, p := range []struct {
			key  string
			want map[string]string
		}{
			{"self", map[string]string{"uid": "85", "nickname": "Love violet life", "avatar": "/avatars/85.svg", "role": "visitor"}},
			{"peer", map[string]string{"uid": "86", "nickname": "大美如斯", "avatar": "/avatars/86.svg", "role": "agent"}},
		} {
			var got map[string]string
			if err := json.Unmarshal(f.fields[p.key], &got); err != nil || !maps.Equal(got, p.want) {
				t.Errorf("a: profile frame %s: %s is %s, want %v", f.raw, p.key, f.fields[p.key], p.want)
			}
		}
		expectNothing(t, a)
	})

	t.Run("say crosses gateways", func(t *testing.T) {
		a, b := c.dial(t, 0, "a"), c.dial(t, 1, "b")
		a.bind("85")
		b.bind("86")
		const text = "<b>Tom & \"Jerry\"</b>\nit's 1 > 0\r\nend"
		// PHP: nl2br(htmlspecialchars($text)), ENT_QUOTES | ENT_HTML401.
		const escaped = "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;<br />\nit&#039;s 1 &gt; 0<br />\r\nend"
		a.say("85", "86", text)

		got := b.expect("text")
		date, id := checkMessage(t, "b", got, message{typ: "text", id: a.id, frontID: "85", toID: "86", data: escaped, raw: text})
		// The frame carries the markup as is, not as \u003c escapes.
		if want := `"data":"&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;<br />\nit&#039;s 1 &gt; 0<br />\r\nend"`; !strings.Contains(got.raw, want) {
			t.Errorf("b: text frame %s does not contain %s", got.raw, want)
		}
		save := a.expect("save")
		saveDate, _ := checkMessage(t, "a", save, message{typ: "save", id: a.id, frontID: "85", toID: "86", data: escaped, raw: text, isRead: "1", msgID: id})
		if saveDate != date {
			t.Errorf("save date %q differs from text date %q", saveDate, date)
		}
		// Only the recipient gets the text, only the sender the save.
		expectNothing(t, a, b)

		// And back the other way; the store numbers messages in order.
		back := chat(t, b, "86", a, "85", "hello back")
		if back <= id {
			t.Errorf("the reply has msg_id %d, not above the first message's %d", back, id)
		}
		expectNothing(t, a, b)

		// A say with a client message id gets it back in its save.
		a.sayCMID("85", "86", "with a cmid", "crosses-1")
		_, id = checkMessage(t, "b", b.expect("text"), plain("text", a.id, "85", "86", "with a cmid", ""))
		want := plain("save", a.id, "85", "86", "with a cmid", "1")
		want.cmid, want.msgID = "crosses-1", id
		checkMessage(t, "a", a.expect("save"), want)
		expectNothing(t, a, b)

		// Delivered is not read: a new connection of 86 finds the two
		// messages from 85 unread, one of 85 the one from 86.
		n86, n85 := c.dial(t, 0, "n86"), c.dial(t, 1, "n85")
		checkUnread(t, "n86", n86.bind("86"), map[string]int{"85": 2})
		checkUnread(t, "n85", n85.bind("85"), map[string]int{"86": 1})
		expectNothing(t, a, b, n86, n85)
	})

	t.Run("say to offline uid", func(t *testing.T) {
		a, b := c.dial(t, 0, "a"), c.dial(t, 1, "b")
		a.bind("85")
		b.bind("86")
		a.say("85", "89", "anyone there?")
		checkMessage(t, "a", a.expect("save"), plain("save", a.id, "85", "89", "anyone there?", "0"))
		expectNothing(t, a, b)
	})

	t.Run("uid bound on both gateways", func(t *testing.T) {
		a, b0, b1 := c.dial(t, 0, "a"), c.dial(t, 0, "b0"), c.dial(t, 1, "b1")
		a.bind("85")
		b0.bind("86")
		b1.bind("86")
		a.say("85", "86", "to both of you")
		// One message: both connections get it with the one msg_id.
		text := plain("text", a.id, "85", "86", "to both of you", "")
		_, text.msgID = checkMessage(t, "b0", b0.expect("text"), text)
		checkMessage(t, "b1", b1.expect("text"), text)
		save := plain("save", a.id, "85", "86", "to both of you", "1")
		save.msgID = text.msgID
		checkMessage(t, "a", a.expect("save"), save)
		expectNothing(t, a, b0, b1)

		// A save goes to every connection of the sender's uid.
		b1.say("86", "85", "from one of us")
		text = plain("text", b1.id, "86", "85", "from one of us", "")
		_, text.msgID = checkMessage(t, "a", a.expect("text"), text)
		save = plain("save", b1.id, "86", "85", "from one of us", "1")
		save.msgID = text.msgID
		for _, b := range []*client{b0, b1} {
			checkMessage(t, b.name, b.expect("save"), save)
		}
		expectNothing(t, a, b0, b1)
	})

	t.Run("forged frontId", func(t *testing.T) {
		a, b := c.dial(t, 0, "a"), c.dial(t, 1, "b")
		a.bind("85")
		b.bind("86")
		a.say("86", "86", "I am 86, honest")
		a.expectError("forbidden", "say")
		// The error names the refused say's cmid, when it had one.
		a.sayCMID("86", "86", "I am 86, really", "forged-1")
		a.expectErrorCMID("forbidden", "say", "forged-1")
		expectNothing(t, a, b)
		// The connection stays usable.
		chat(t, a, "85", b, "86", "sorry")
	})

	t.Run("garbage frames", func(t *testing.T) {
		a, b := c.dial(t, 0, "a"), c.dial(t, 1, "b")
		a.bind("85")
		b.bind("86")
		tests := []struct {
			name      string
			typ       websocket.MessageType
			data      string
			code, ref string
		}{
			{"not JSON", websocket.MessageText, "hello", "invalid_json", ""},
			{"truncated JSON", websocket.MessageText, `{"type":"say"`, "invalid_json", ""},
			{"array", websocket.MessageText, "[]", "invalid_json", ""},
			{"null", websocket.MessageText, "null", "invalid_json", ""},
			{"string", websocket.MessageText, `"say"`, "invalid_json", ""},
			{"empty object", websocket.MessageText, "{}", "missing_type", ""},
			{"numeric type", websocket.MessageText, `{"type":1}`, "invalid_field", ""},
			{"unknown type", websocket.MessageText, `{"type":"dance"}`, "unknown_type", "dance"},
			{"say without data", websocket.MessageText, `{"type":"say","frontId":"85","toId":"86"}`, "missing_field", "say"},
			{"say without toId", websocket.MessageText, `{"type":"say","frontId":"85","data":"x"}`, "missing_field", "say"},
			{"say with object data", websocket.MessageText, `{"type":"say","frontId":"85","toId":"86","data":{}}`, "invalid_field", "say"},
			{"bind without frontId", websocket.MessageText, `{"type":"bind"}`, "missing_field", "bind"},
			{"bind with another client_id", websocket.MessageText,
				fmt.Sprintf(`{"type":"bind","client_id":%q,"frontId":"85"}`, b.id), "client_id_mismatch", "bind"},
			{"binary frame", websocket.MessageBinary, `{"type":"say","frontId":"85","toId":"86","data":"x"}`, "binary_frame", ""},
		}
		for _, tt := range tests {
			a.sendRaw(tt.typ, tt.data)
			f := a.expect("error")
			if f.str("code") != tt.code || f.str("ref") != tt.ref || f.str("message") == "" {
				t.Errorf("%s: %q got %s, want code %q, ref %q and a message", tt.name, tt.data, f.raw, tt.code, tt.ref)
			}
		}
		expectNothing(t, a, b)
		// The same connection still chats, both ways.
		chat(t, a, "85", b, "86", "still here")
		chat(t, b, "86", a, "85", "so am I")

		// A say before any bind is refused; the connection may bind after.
		u := c.dial(t, 1, "u")
		u.say("90", "85", "who am I")
		u.expectError("not_bound", "say")
		u.bind("90")
		chat(t, u, "90", a, "85", "now I am 90")
		expectNothing(t, a, b, u)
	})

	t.Run("disconnect takes uid offline", func(t *testing.T) {
		a, b := c.dial(t, 0, "a"), c.dial(t, 1, "b")
		a.bind("185")
		b.bind("186")
		chat(t, a, "185", b, "186", "are you there?")
		b.close()
		// The gateway unbinds a closed connection at once; allow a few
		// seconds for it to notice the close.
		var last frame
		err := retryUntil(context.Background(), 5*time.Second, 100*time.Millisecond, func() error {
			a.say("185", "186", "gone?")
			last = a.expect("save")
			if string(last.fields["is_read"]) != "0" {
				return fmt.Errorf("save %s", last.raw)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("a: uid 186 still online 5s after its only connection closed: %v", err)
		}
		checkMessage(t, "a", last, plain("save", a.id, "185", "186", "gone?", "0"))
		expectNothing(t, a)
	})

	t.Run("worker killed", func(t *testing.T) {
		// On each gateway, a connection routed to worker0, the one that
		// dies, and one routed to worker1.
		var on0, on1 [2]*client
		for gw := range c.gateways {
			for n := 0; on0[gw] == nil || on1[gw] == nil; n++ {
				if n == 8 {
					t.Fatalf("gateway%d routed 8 connections without using both workers", gw)
				}
				cl := c.dial(t, gw, fmt.Sprintf("g%d.%d", gw, n))
				switch c.workerOf(t, cl) {
				case 0:
					on0[gw] = cmp.Or(on0[gw], cl)
				case 1:
					on1[gw] = cmp.Or(on1[gw], cl)
				}
			}
		}
		a, b := on0[0], on0[1] // routed to worker0
		p, q := on1[0], on1[1] // routed to worker1
		a.bind("385")
		b.bind("386")
		p.bind("387")
		q.bind("388")
		chat(t, a, "385", b, "386", "before the kill")
		chat(t, p, "387", q, "388", "before the kill")

		c.workers[0].kill(t)
		t.Logf("killed %s", c.workers[0].name)

		// The connections routed to the dead worker chat again through the
		// surviving one, both ways and with those it already served.
		const within = 10 * time.Second
		sayUntilDelivered(t, within, a, "385", b, "386")
		sayUntilDelivered(t, within, b, "386", a, "385")
		sayUntilDelivered(t, within, a, "385", q, "388")
		sayUntilDelivered(t, within, q, "388", a, "385")
		sayUntilDelivered(t, within, p, "387", b, "386")
		// So do connections made after the kill.
		n0, n1 := c.dial(t, 0, "n0"), c.dial(t, 1, "n1")
		n0.bind("389")
		n1.bind("390")
		chat(t, n0, "389", n1, "390", "after the kill")
		chat(t, n1, "390", a, "385", "after the kill")
		expectNothing(t, a, b, p, q, n0, n1)
	})

	t.Run("gateway killed", func(t *testing.T) {
		// worker1 survives the previous subtest; ask it through its Push API.
		w := c.workers[1]
		push := pushClient(t, w.pushAddr, c.pushToken)
		ctx := context.Background()

		doomed, survivor := c.dial(t, 0, "doomed"), c.dial(t, 1, "survivor")
		doomed.bind("485") // bound only on gateway0
		survivor.bind("486")
		for _, uid := range []string{"485", "486"} {
			online, err := isUIDOnline(ctx, push, uid)
			if err != nil || !online {
				t.Fatalf("IsUidOnline(%s) = %v, %v before the kill; want true", uid, online, err)
			}
		}
		// The Push API refuses callers without the token, or with another.
		for _, token := range []string{"", "not-the-token"} {
			_, err := isUIDOnline(ctx, pushClient(t, w.pushAddr, token), "486")
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("IsUidOnline with token %q: %v, want code Unauthenticated", token, err)
			}
		}

		killed := time.Now()
		c.gateways[0].kill(t)
		t.Logf("killed %s", c.gateways[0].name)
		doomed.expectEnded(frameTimeout)

		// Within one lease, plus a margin for the register's poll and the
		// worker's watch, the uid bound only on the dead gateway is offline.
		const within = 3 * lease
		errStillOnline := errors.New("still online")
		err := retryUntil(ctx, within, 50*time.Millisecond, func() error {
			online, err := isUIDOnline(ctx, push, "485")
			if err == nil && online {
				return errStillOnline
			}
			return err
		})
		if err != nil {
			t.Fatalf("IsUidOnline(485) after killing its gateway: %v after %v, want false within %v",
				err, time.Since(killed).Round(time.Millisecond), within)
		}
		t.Logf("uid 485 offline %v after its gateway was killed", time.Since(killed).Round(time.Millisecond))
		if online, err := isUIDOnline(ctx, push, "486"); err != nil || !online {
			t.Errorf("IsUidOnline(486) = %v, %v after killing the other gateway; want true", online, err)
		}

		survivor.say("486", "485", "hello?")
		checkMessage(t, "survivor", survivor.expect("save"), plain("save", survivor.id, "486", "485", "hello?", "0"))
		expectNothing(t, survivor)

		// The surviving gateway still chats.
		other := c.dial(t, 1, "other")
		other.bind("487")
		chat(t, other, "487", survivor, "486", "still alive")
	})
}

// workerOf returns the index of the worker that handles cl's events. It
// sends a request the chat refuses and looks for the worker that logged the
// refusal: the chat logs refusals at debug level with the client_id, before
// it sends the error frame.
func (c *cluster) workerOf(t *testing.T, cl *client) int {
	t.Helper()
	cl.sendRaw(websocket.MessageText, `{"type":"which worker?"}`)
	cl.expectError("unknown_type", "which worker?")
	found := -1
	for i, w := range c.workers {
		for _, line := range strings.Split(w.log(), "\n") {
			if strings.Contains(line, `msg="chat request refused"`) && strings.Contains(line, "client_id="+cl.id) {
				if found >= 0 {
					t.Fatalf("%s: both workers handled its events", cl.name)
				}
				found = i
				break
			}
		}
	}
	if found < 0 {
		t.Fatalf("%s: no worker logged the refusal of its request (client_id=%s)", cl.name, cl.id)
	}
	return found
}
