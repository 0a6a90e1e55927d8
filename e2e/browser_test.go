package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gatewire/gatewire/internal/testsvc"
)

// TestBrowserAllInOne drives the chat page in headless Chromium against the
// all-in-one binary (register, gateway, worker and page on one port, SQLite
// store): users 85 and 86 chat in two tabs.
//
// Each tab reaches the server through a proxy of its own, which the test
// cuts to take the tab's network away: a message written offline is sent
// when the tab is back, and a tab that was away catches up on what it
// missed.
func TestBrowserAllInOne(t *testing.T) {
	exe := needChromium(t)
	a := startAllInOne(t)
	server := strings.TrimSuffix(strings.TrimPrefix(a.pageURL, "http://"), "/")
	px85, px86 := startCutProxy(t, server), startCutProxy(t, server)
	b := startBrowser(t, exe)
	setupScenario(t, b, a.pageURL)
	chatScenario(t, b, "allinone",
		"http://"+px85.addr()+"/?from=85&to=86", "http://"+px86.addr()+"/?from=86&to=85",
		func(p85, p86 *tab) []chatLine { return reconnectScenario(t, "ws://"+server+"/", px85, px86, p85, p86) })
}

// TestBrowserCluster drives the chat page in headless Chromium against the
// cluster: 85 uses worker0's page, which connects to gateway0, and 86
// worker1's page, which connects to gateway1, so every message crosses
// gateways.
func TestBrowserCluster(t *testing.T) {
	exe := needChromium(t)
	c := startCluster(t)
	b := startBrowser(t, exe)
	chatScenario(t, b, "cluster", c.workers[0].pageURL+"?from=85&to=86", c.workers[1].pageURL+"?from=86&to=85", nil)
}

// chatLine is a message the scenario sent and where it must show.
type chatLine struct {
	text string
	from string
}

// chatScenario is the seed's chat, in the browser: both pages come online
// with the peer's nickname in the header; messages go both ways, appear on
// the other side with the sender's avatar and reach "read"; markup is shown
// as text; interlude, if not nil, runs and returns what it sent; a reload
// shows the newest ten messages from history, and "load earlier" the rest.
func chatScenario(t *testing.T, b *browser, name, url85, url86 string, interlude func(p85, p86 *tab) []chatLine) {
	shots := artifactsDir(t)
	p85 := b.open(t, "85", url85)
	p86 := b.open(t, "86", url86)
	// Cleanups run last-in first-out: these run before the tabs close, also
	// when the test failed.
	t.Cleanup(func() {
		p85.screenshot(shots, name+"-85.png")
		p86.screenshot(shots, name+"-86.png")
	})

	p85.waitOnline()
	p86.waitOnline()
	p85.waitView(pageWait, `header "与大美如斯聊天中..."`, func(v pageView) bool { return v.Title == "与大美如斯聊天中..." })
	p86.waitView(pageWait, `header "与Love violet life聊天中..."`, func(v pageView) bool { return v.Title == "与Love violet life聊天中..." })
	for _, p := range []*tab{p85, p86} {
		p.waitJS("both header avatars loaded",
			`Array.from(document.querySelectorAll('.bar img.avatar')).every((i) => i.complete && i.naturalWidth > 0)`)
		if v := p.view(); len(v.Bubbles) != 0 || v.More {
			t.Fatalf("%s: a new conversation shows %d bubbles (more: %v), want none\n%s", p.name, len(v.Bubbles), v.More, p.describe())
		}
	}

	var conversation []chatLine
	exchange := func(from, to *tab, fromUID, text string) {
		t.Helper()
		from.send(text)
		in := to.waitBubble(fmt.Sprintf("%s's message %q", fromUID, text), text, func(b bubble) bool {
			return b.Side == "peer" && b.From == fromUID && b.MsgID != "" && b.AvatarOK
		})
		if in.Avatar != fromUID || in.State != "received" || !bubbleTimeRE.MatchString(in.Date) {
			t.Errorf("%s: bubble %+v, want %s's avatar, state received and a time", to.name, in, fromUID)
		}
		if in.Children != 0 {
			t.Errorf("%s: the bubble of %q holds %d elements, want text only", to.name, text, in.Children)
		}
		// The recipient's page is visible, so it marks the message read.
		own := from.waitBubble(fmt.Sprintf("%q read", text), text, func(b bubble) bool {
			return b.Side == "self" && b.State == "read"
		})
		if own.MsgID != in.MsgID || own.CMID == "" || own.From != fromUID || own.Label != "已读" || !own.AvatarOK {
			t.Errorf("%s: own bubble %+v, want msg_id %s, a cmid, label 已读 and a loaded avatar", from.name, own, in.MsgID)
		}
		conversation = append(conversation, chatLine{text: text, from: fromUID})
	}

	exchange(p85, p86, "85", "你好，我想咨询一下订单的事")
	exchange(p86, p85, "86", "您好！请问有什么可以帮您？")
	multi := "订单号 20240101\n  收货地址：  北京市"
	exchange(p85, p86, "85", multi)
	ws := mustEvalJS[string](p86, `getComputedStyle(Array.from(document.querySelectorAll('#messages .bubble')).find((b) => b.textContent === `+jsString(multi)+`)).whiteSpace`)
	if ws != "pre-wrap" {
		t.Errorf("86: the multi-line bubble has white-space %q, want pre-wrap", ws)
	}

	// Markup is text: it shows literally and runs nothing.
	const xss = `<img src=x onerror=alert(1)>`
	exchange(p85, p86, "85", xss)
	for _, p := range []*tab{p85, p86} {
		if n := mustEvalJS[int](p, `document.querySelectorAll('img[src="x"], #messages .bubble *').length`); n != 0 {
			t.Errorf("%s: the page holds %d elements made from a message's text", p.name, n)
		}
		p.screenshot(shots, name+"-"+p.name+"-chat.png")
	}

	if interlude != nil {
		conversation = append(conversation, interlude(p85, p86)...)
	}

	// More than one page of history.
	for i := 1; i <= 9; i++ {
		text := fmt.Sprintf("补充说明第 %d 条", i)
		p86.send(text)
		conversation = append(conversation, chatLine{text: text, from: "86"})
	}
	last := conversation[len(conversation)-1].text
	p85.waitBubble("86's last message", last, func(b bubble) bool { return b.Side == "peer" })
	p86.waitBubble("86's last message read", last, func(b bubble) bool { return b.State == "read" })
	for _, p := range []*tab{p85, p86} {
		checkConversation(t, p, p.view(), conversation)
	}
	before := p85.view()

	// A reload shows the newest ten messages from history, read states
	// included, and offers the earlier ones.
	p85.reload()
	p85.waitOnline()
	newest := conversation[len(conversation)-10:]
	after := p85.waitView(pageWait, "the newest 10 messages after the reload", func(v pageView) bool {
		if len(v.Bubbles) != len(newest) || !v.More || v.Title != "与大美如斯聊天中..." {
			return false
		}
		for _, b := range v.Bubbles {
			if b.From == "85" && b.State != "read" {
				return false
			}
		}
		return true
	})
	checkConversation(t, p85, after, newest)
	all := after
	for page := 1; all.More; page++ {
		shown := len(all.Bubbles)
		p85.click("more")
		all = p85.waitView(pageWait, fmt.Sprintf("page %d of earlier messages", page), func(v pageView) bool {
			return len(v.Bubbles) > shown
		})
		if page > len(conversation) {
			t.Fatalf("85: still more to load after %d pages\n%s", page, p85.describe())
		}
	}
	checkConversation(t, p85, all, conversation)
	for i := range all.Bubbles {
		if all.Bubbles[i].MsgID != before.Bubbles[i].MsgID || all.Bubbles[i].State != before.Bubbles[i].State {
			t.Errorf("85: after the reload bubble %d is msg_id %s (%s), was %s (%s)", i,
				all.Bubbles[i].MsgID, all.Bubbles[i].State, before.Bubbles[i].MsgID, before.Bubbles[i].State)
		}
	}

	p85.checkClean()
	p86.checkClean()
}

// catchUpBurst is how many messages 85 sends from another device while 86 is
// away: more than one catch-up page (50), so that 86 must ask again.
const catchUpBurst = 55

// demoToken fetches a bind token for uid from the all-in-one's demo
// endpoint at base (http://host:port/).
func demoToken(t *testing.T, base, uid string) string {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(base, "/") + "/demo/token?uid=" + url.QueryEscape(uid))
	if err != nil {
		t.Fatalf("demo token: %v", err)
	}
	defer resp.Body.Close()
	var v struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK || v.Token == "" {
		t.Fatalf("demo token: status %d, %v, token %q", resp.StatusCode, err, v.Token)
	}
	return v.Token
}

// reconnectScenario takes the network away from both tabs: 85 writes a
// message while offline, which shows as sending and is sent with its cmid
// once 85 is back; while 86 is still away 85 sends a second one, and then
// catchUpBurst more from another device (a WebSocket client bound as 85 on
// wsURL), which 85's page shows as its own; when 86 is back it catches up on
// all of them, in order, and reads them.
func reconnectScenario(t *testing.T, wsURL string, px85, px86 *cutProxy, p85, p86 *tab) []chatLine {
	t.Helper()
	px85.cut()
	px86.cut()
	for _, p := range []*tab{p85, p86} {
		p.waitView(pageWait, "reconnecting status", func(v pageView) bool { return v.Status == "reconnecting" })
	}

	const offline = "断网时写的消息"
	p85.send(offline)
	pending := p85.waitBubble("the offline message as sending", offline, func(b bubble) bool {
		return b.Side == "self" && b.State == "sending" && b.MsgID == "" && b.CMID != ""
	})
	p85.screenshot(artifactsDir(t), "allinone-85-offline.png")

	px85.restore()
	p85.waitOnline()
	saved := p85.waitBubble("the offline message sent", offline, func(b bubble) bool {
		return b.State == "sent" && b.MsgID != ""
	})
	if saved.CMID != pending.CMID {
		t.Errorf("85: the offline message was acknowledged with cmid %q, sent with %q", saved.CMID, pending.CMID)
	}
	const second = "你不在线时发的第二条"
	p85.send(second)
	p85.waitBubble("the second message sent", second, func(b bubble) bool { return b.State == "sent" && b.MsgID != "" })
	missed := []chatLine{{text: offline, from: "85"}, {text: second, from: "85"}}

	other := dial(t, wsURL, "85's other device")
	other.send(map[string]string{"type": "bind", "client_id": other.id, "frontId": "85",
		"token": demoToken(t, "http://"+strings.TrimPrefix(wsURL, "ws://"), "85")})
	other.expect("bound")
	for i := 1; i <= catchUpBurst; i++ {
		text := fmt.Sprintf("另一台设备发的第 %02d 条", i)
		other.send(map[string]string{"type": "say", "frontId": "85", "toId": "86", "data": text, "cmid": fmt.Sprintf("other-%d", i)})
		missed = append(missed, chatLine{text: text, from: "85"})
	}
	for i := 1; i <= catchUpBurst; i++ {
		if _, ok := other.waitFor(frameTimeout, func(f frame) bool { return f.typ() == "save" }); !ok {
			t.Fatalf("85's other device: %d of %d saves within %v", i-1, catchUpBurst, frameTimeout)
		}
	}
	other.closeNow()
	last := missed[len(missed)-1].text
	p85.waitBubble("the other device's messages", last, func(b bubble) bool { return b.Side == "self" && b.State == "sent" })
	if v := p86.view(); v.Status != "reconnecting" {
		t.Fatalf("86: status %q while its network is cut, want reconnecting", v.Status)
	}

	px86.restore()
	p86.waitOnline()
	p86.waitBubble("the last missed message caught up", last, func(b bubble) bool { return b.Side == "peer" && b.MsgID != "" })
	p85.waitBubble("the last missed message read after the catch-up", last, func(b bubble) bool { return b.State == "read" })
	return missed
}

// setupScenario opens the page without user ids: it shows a form instead of
// a chat, and the form leads to the chat of the ids filled in (87 with 88,
// out of the way of the other scenarios).
func setupScenario(t *testing.T, b *browser, pageURL string) {
	t.Helper()
	p := b.open(t, "setup", pageURL)
	p.waitJS("the setup form", `!document.getElementById('setup').hidden && document.getElementById('app').hidden`)
	p.screenshot(artifactsDir(t), "setup.png")
	p.fill("setup-from", "87")
	p.fill("setup-to", "88")
	p.clickCSS(`#setup-form button[type="submit"]`)
	p.waitOnline()
	p.waitView(pageWait, `header "与悦悦聊天中..."`, func(v pageView) bool { return v.Title == "与悦悦聊天中..." })
	if loc := mustEvalJS[string](p, `location.search`); loc != "?from=87&to=88" {
		t.Errorf("setup: the form led to %q, want ?from=87&to=88", loc)
	}
	p.checkClean()
}

// bubbleTimeRE is how a bubble shows today's date: H:i.
var bubbleTimeRE = regexp.MustCompile(`^\d{2}:\d{2}$`)

// checkConversation checks that the page shows exactly want, in order: each
// message once, sorted by increasing msg_id, on the side of its sender.
func checkConversation(t *testing.T, p *tab, v pageView, want []chatLine) {
	t.Helper()
	if len(v.Bubbles) != len(want) {
		t.Errorf("%s: %d bubbles, want %d\n%s", p.name, len(v.Bubbles), len(want), p.describe())
		return
	}
	last := int64(0)
	for i, b := range v.Bubbles {
		id, err := strconv.ParseInt(b.MsgID, 10, 64)
		if err != nil || id <= last {
			t.Errorf("%s: bubble %d has msg_id %q after %d, want increasing ids", p.name, i, b.MsgID, last)
		}
		last = id
		side := "peer"
		if want[i].from == p.name {
			side = "self"
		}
		if b.Text != want[i].text || b.From != want[i].from || b.Side != side {
			t.Errorf("%s: bubble %d is %q from %s on the %s side, want %q from %s on the %s side",
				p.name, i, b.Text, b.From, b.Side, want[i].text, want[i].from, side)
		}
	}
}

// waitJS polls a JavaScript boolean expression until it is true.
func (tb *tab) waitJS(what, expr string) {
	tb.t.Helper()
	tb.waitView(pageWait, what, func(pageView) bool {
		ok, err := evalJS[bool](tb, expr)
		return err == nil && ok
	})
}

// allInOne is the all-in-one process.
type allInOne struct {
	*proc
	pageURL string // http://127.0.0.1:port/ — the page and the WebSocket
}

// startAllInOne starts the all-in-one binary in -demo mode with a fresh
// SQLite store and waits until its worker is linked to its gateway. It stops
// when t ends; when t failed, the tail of its log is printed.
func startAllInOne(t *testing.T) *allInOne {
	t.Helper()
	return startAllInOneWith(t, "-demo")
}

// startAllInOneWith is startAllInOne with flags (-insecure-bind,
// -jwt-secret, ...) instead of -demo.
func startAllInOneWith(t *testing.T, flags ...string) *allInOne {
	t.Helper()
	dir := t.TempDir()
	a := &allInOne{}
	t.Cleanup(func() { // registered before the process: runs after it stopped
		if t.Failed() && a.proc != nil {
			t.Logf("---- allinone (%s), %v, last lines:\n%s", a.logPath, a.cmd.ProcessState, a.tail(logTailLines))
		}
	})
	for attempt := 1; ; attempt++ {
		addr := testsvc.FreeAddr(t)
		a.pageURL = "http://" + addr + "/"
		a.proc = launch(t, "allinone", "allinone", filepath.Join(dir, fmt.Sprintf("allinone.%d.log", attempt)), append([]string{
			"-ws-addr", addr, "-metrics-addr", "127.0.0.1:0", "-store", "sqlite:" + filepath.Join(dir, "chat.db"), "-log-level", "debug",
		}, flags...))
		err := a.waitLog(startTimeout, "a gateway with its worker linked", func(log string) bool {
			return strings.Contains(log, `msg="gateway listening"`) && len(linkedWorkers(log)) == 1
		})
		if err == nil {
			return a
		}
		if a.hasExited() && strings.Contains(a.log(), "address already in use") && attempt < startAttempts {
			a.killed = true // its failure is handled here
			t.Logf("allinone: port %s was taken; retrying with another", addr)
			continue
		}
		t.Fatal(err)
	}
}
