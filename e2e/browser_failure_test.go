package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/web"
)

// TestBrowserStoreFailed checks what the page does when the server could not
// store a message: the bubble shows 发送失败 with a retry button, and the
// retry sends the same cmid again. A real store cannot be made to fail on
// cue, so the page talks to a scripted gateway here: it answers the first say
// with a store_failed error and the second with a save.
func TestBrowserStoreFailed(t *testing.T) {
	exe := needChromium(t)
	gw := newScriptedGateway(t)
	pages := httptest.NewServer(web.New(web.Config{WebSocketURL: gw.url}, demoLookup{}))
	t.Cleanup(pages.Close)
	b := startBrowser(t, exe)
	p := b.open(t, "85", pages.URL+"/?from=85&to=86")
	shots := artifactsDir(t)
	t.Cleanup(func() { p.screenshot(shots, "store-failed-85.png") })

	p.waitOnline()
	p.waitView(pageWait, "the header", func(v pageView) bool { return v.Title == "与大美如斯聊天中..." })
	const text = "这条消息第一次会存储失败"
	p.send(text)
	failed := p.waitBubble("the failed message", text, func(b bubble) bool { return b.State == "failed" })
	p.screenshot(shots, "store-failed-85-failed.png")
	if failed.Label != "发送失败" || failed.MsgID != "" {
		t.Errorf("failed bubble %+v, want label 发送失败 and no msg_id", failed)
	}
	if !mustEvalJS[bool](p, `!document.querySelector('#messages li[data-state="failed"] .retry').hidden`) {
		t.Fatal("the failed bubble has no visible retry button")
	}
	p.clickCSS(`#messages li[data-state="failed"] .retry`)
	ok := p.waitBubble("the retried message", text, func(b bubble) bool { return b.State == "sent" && b.MsgID == "1" })
	if ok.CMID != failed.CMID {
		t.Errorf("the retry was acknowledged with cmid %q, the first try had %q", ok.CMID, failed.CMID)
	}
	says := gw.says()
	if len(says) != 2 || says[0] != failed.CMID || says[1] != failed.CMID {
		t.Errorf("the gateway got says with cmids %q, want the bubble's cmid %q twice", says, failed.CMID)
	}
	p.checkClean()
}

// demoLookup knows the two demo users the test needs.
type demoLookup struct{}

func (demoLookup) Users(_ context.Context, uids ...string) (map[string]store.User, error) {
	known := map[string]store.User{
		"85": {UID: "85", Nickname: "Love violet life"},
		"86": {UID: "86", Nickname: "大美如斯"},
	}
	out := make(map[string]store.User)
	for _, uid := range uids {
		if u, ok := known[uid]; ok {
			out[uid] = u
		}
	}
	return out, nil
}

// scriptedGateway is a WebSocket server that speaks the chat protocol for one
// client bound as 85 chatting with 86, and fails the first say.
type scriptedGateway struct {
	url string

	mu    sync.Mutex
	cmids []string // of the says received, in order
	wg    sync.WaitGroup
}

func newScriptedGateway(t *testing.T) *scriptedGateway {
	t.Helper()
	g := &scriptedGateway{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.wg.Add(1)
		defer g.wg.Done()
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{"127.0.0.1:*"}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		g.serve(r.Context(), ws)
	}))
	g.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		g.wg.Wait()
	})
	return g
}

func (g *scriptedGateway) says() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.cmids...)
}

// serve answers the page's frames until the connection ends.
func (g *scriptedGateway) serve(ctx context.Context, ws *websocket.Conn) {
	const clientID = "0123456789abcdef0123456789abcdef"
	write := func(v any) error {
		b, _ := json.Marshal(v) // maps of strings and numbers always marshal
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return ws.Write(wctx, websocket.MessageText, b)
	}
	if write(map[string]string{"type": "init", "client_id": clientID}) != nil {
		return
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return
		}
		var req map[string]any
		if json.Unmarshal(data, &req) != nil {
			continue
		}
		var reply any
		switch req["type"] {
		case "bind":
			reply = map[string]any{"type": "bound", "client_id": clientID, "frontId": req["frontId"], "unread": map[string]int{}}
		case "profile":
			reply = map[string]any{"type": "profile",
				"self": map[string]string{"uid": "85", "nickname": "Love violet life", "avatar": "/avatars/85.svg", "role": "visitor"},
				"peer": map[string]string{"uid": "86", "nickname": "大美如斯", "avatar": "/avatars/86.svg", "role": "agent"}}
		case "history":
			reply = map[string]any{"type": "history", "toId": req["toId"], "messages": []any{}, "more": false}
		case "say":
			cmid, _ := req["cmid"].(string)
			g.mu.Lock()
			g.cmids = append(g.cmids, cmid)
			n := len(g.cmids)
			g.mu.Unlock()
			if n == 1 {
				reply = map[string]any{"type": "error", "code": "store_failed", "ref": "say", "cmid": cmid,
					"message": "the message was not stored; send it again with the same cmid"}
			} else {
				reply = map[string]any{"type": "save", "id": clientID, "frontId": "85", "toId": "86",
					"date": time.Now().Format("2006-01-02 15:04:05"), "data": req["data"], "raw": req["data"],
					"msg_id": 1, "is_read": 0, "cmid": cmid}
			}
		default:
			continue
		}
		if write(reply) != nil {
			return
		}
	}
}
