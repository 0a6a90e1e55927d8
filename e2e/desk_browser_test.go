package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatewire/gatewire/internal/bindtoken"
)

// TestDeskBrowserAllInOne runs the desk's story (deskScenario) against the
// all-in-one in -demo mode; the agents sign in with the console's demo
// login.
func TestDeskBrowserAllInOne(t *testing.T) {
	exe := needChromium(t)
	sh := startShop(t)
	a := startAllInOneWith(t, "-demo", "-origins", sh.host)
	b := startBrowser(t, exe)
	deskScenario(t, b, sh, deskSite{
		name:      "allinone",
		widget:    a.pageURL,
		console86: a.pageURL + "agent",
		console88: a.pageURL + "agent",
		openAgent: openDemoAgent,
	})
}

// TestDeskBrowserCluster runs the desk's story against the multi-process
// cluster (PostgreSQL, Redis, a register, two gateways, two workers): the
// widget comes from worker0 and connects to gateway0, agent 86's console
// from worker1 (gateway1), agent 88's from worker0 (gateway0), so that
// assignment, presence, typing, receipts and the transfer all cross
// processes. The agents sign in with bind tokens the application signed.
func TestDeskBrowserCluster(t *testing.T) {
	exe := needChromium(t)
	sh := startShop(t)
	c := startClusterWith(t, randomHex(32))
	b := startBrowser(t, exe)
	deskScenario(t, b, sh, deskSite{
		name:      "cluster",
		widget:    c.workers[0].pageURL,
		console86: c.workers[1].pageURL + "agent",
		console88: c.workers[0].pageURL + "agent",
		openAgent: func(t *testing.T, b *browser, name, url, uid string) *tab {
			token, err := bindtoken.Sign([]byte(c.jwtSecret), uid, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return openTokenAgent(t, b, name, url, token)
		},
	})
}

// deskSite is where deskScenario runs: the server of the widget, the
// consoles of agents 86 and 88, and how an agent signs in.
type deskSite struct {
	name                 string
	widget               string // base URL serving static/widget.js
	console86, console88 string
	openAgent            func(t *testing.T, b *browser, name, url, uid string) *tab
}

// shop is a site on another origin than the chat server that embeds the
// widget.
type shop struct {
	host   string // 127.0.0.1:port
	widget atomic.Value
}

// startShop serves a shop page embedding the widget set by setWidget.
func startShop(t *testing.T) *shop {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sh := &shop{host: lis.Addr().String()}
	sh.widget.Store("")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>演示商城</title></head>
<body style="font-family:sans-serif;margin:24px"><h1>演示商城</h1><p>一件很好的商品。</p>
<script src="%s" async></script></body></html>`, sh.widget.Load())
	})}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return sh
}

// deskScenario drives the customer-service desk in headless Chromium: a
// shop page on another origin embeds the widget with one script tag; the
// visitor writes while no agent is online (the message waits in the queue
// and the widget says so); agent 86 signs in on the console, goes online
// and gets the conversation, sees it in Mine with an unread badge and a
// title badge, opens it (history, visitor info), answers with a canned
// reply; typing shows both ways; the visitor sees the reply, the agent's
// name and presence, and their message read; 86 transfers the conversation
// to agent 88 (a system line records it on every side, 88 is notified and
// sees the whole history); images go both ways as thumbnails; the visitor
// and agent 88 keep their identity and the conversation across a reload;
// the widget switches to English. Widget and console are photographed at
// phone and desktop widths.
func deskScenario(t *testing.T, b *browser, sh *shop, site deskSite) {
	shots := artifactsDir(t)
	shot := func(tb *tab, name string) { tb.screenshot(shots, "desk-"+site.name+"-"+name+".png") }
	sh.widget.Store(site.widget + "static/widget.js")
	shopURL := "http://" + sh.host + "/products/42?from=ad"

	// ---- the visitor writes while nobody is online ----
	v := b.open(t, "visitor", shopURL)
	t.Cleanup(func() { shot(v, "visitor-final") })
	v.waitJS("the widget connected", `(() => { const h = document.getElementById('gatewire-widget'); return !!h && h.dataset.state === 'online'; })()`)
	visitorUID := mustEvalJS[string](v, `document.getElementById('gatewire-widget').dataset.uid`)
	if !strings.HasPrefix(visitorUID, "v_") {
		t.Fatalf("visitor uid %q", visitorUID)
	}
	shot(v, "visitor-launcher")
	v.widget(`r.getElementById('gw-launcher').click()`)
	v.waitJS("the panel open, full screen on a phone", widgetJS(`!r.getElementById('gw-panel').hidden &&
		Math.round(r.getElementById('gw-panel').getBoundingClientRect().width) === innerWidth`))
	// The browser speaks English: so does the widget, until switched.
	v.waitJS("the offline notice and the email field, in English", widgetJS(`r.getElementById('gw-notice').dataset.expect === 'offline' &&
		!r.getElementById('gw-email-form').hidden && r.getElementById('gw-expect').textContent.startsWith('No agent is online')`))
	v.widgetLang("zh-CN")
	v.waitJS("the widget in Chinese", widgetJS(`r.getElementById('gw-expect').textContent.includes('不在线') && r.getElementById('gw-title').textContent === '在线客服'`))
	const first = "你好，我想问一下退货"
	v.widgetType(first)
	v.pressEnter()
	v.waitWidgetMessage("the visitor's message stored", first, `m.dataset.role === 'visitor' && m.dataset.msgId && m.dataset.state === 'sent'`)
	v.widgetType("visitor@example.com", "gw-email")
	v.widget(`r.getElementById('gw-email-save').click()`)
	v.waitJS("the email saved", widgetJS(`!r.getElementById('gw-email-done').hidden && r.getElementById('gw-email-done').textContent.includes('visitor@example.com')`))
	shot(v, "visitor-queued")

	// ---- agent 86 signs in and goes online ----
	a86 := site.openAgent(t, b, "agent86", site.console86, "86")
	t.Cleanup(func() { shot(a86, "agent86-final") })
	a86.waitJS("the waiting conversation under Unassigned", `document.querySelector('#filters [data-filter="unassigned"]').dataset.count === '1'`)
	a86.setPresence("online")
	conv := fmt.Sprintf(`document.querySelector('#conversations li[data-visitor=%q]')`, visitorUID)
	a86.waitJS("the conversation assigned: in Mine, with an unread badge", conv+` !== null && `+conv+`.dataset.agent === '86' &&
		`+conv+`.querySelector('.unread') && `+conv+`.querySelector('.unread').textContent === '1'`)
	a86.waitJS("the title badge and the sound", `document.title.startsWith('(1) ') && Number(document.body.dataset.sounds || 0) >= 1`)
	if p := mustEvalJS[string](a86, conv+`.querySelector('.preview').textContent`); p != first {
		t.Errorf("agent86: the list previews %q, want the visitor's message %q", p, first)
	}
	shot(a86, "agent86-assigned")
	v.waitJS("the visitor sees agent 86, online", widgetJS(`r.getElementById('gw-title').textContent === '大美如斯' &&
		r.getElementById('gw-presence').dataset.presence === 'online' && r.getElementById('gw-notice').dataset.expect === 'now'`))
	v.waitWidgetMessage("the assignment line", "大美如斯 为您服务", `m.dataset.role === 'system'`)

	// ---- 86 opens it: history, visitor info; answers with a canned reply ----
	a86.clickCSS(fmt.Sprintf(`#conversations li[data-visitor=%q]`, visitorUID))
	a86.waitJS("the thread with the history", `Array.from(document.querySelectorAll('#messages li')).some((m) => m.dataset.role === 'visitor' && m.textContent.includes(`+jsString(first)+`))`)
	a86.waitJS("the unread badge cleared", `!document.title.startsWith('(') && !`+conv+`.querySelector('.unread')`)
	for id, want := range map[string]string{"info-page": shopURL, "info-email": "visitor@example.com", "info-visitor": visitorUID} {
		if got := mustEvalJS[string](a86, `document.getElementById('`+id+`').textContent`); got != want {
			t.Errorf("agent86: #%s shows %q, want %q", id, got, want)
		}
	}
	if ua := mustEvalJS[string](a86, `document.getElementById('info-ua').textContent`); !strings.Contains(ua, "Chrome") {
		t.Errorf("agent86: user agent %q", ua)
	}
	if fs := mustEvalJS[string](a86, `document.getElementById('info-first-seen').textContent`); fs == "" || fs == "—" {
		t.Errorf("agent86: first seen %q", fs)
	}
	v.waitWidgetMessage("the visitor's message read", first, `m.dataset.state === 'read'`)

	a86.focus("input")
	a86.keys("/wa")
	a86.waitJS("the canned replies for /wa", `!document.getElementById('canned').hidden && document.querySelector('#canned li[data-shortcut="wait"]') !== null`)
	a86.pressEnter()
	const canned = "请稍等，我帮您查询一下。"
	if got := mustEvalJS[string](a86, `document.getElementById('input').value`); got != canned {
		t.Fatalf("agent86: the canned reply inserted %q, want %q", got, canned)
	}
	a86.pressEnter()
	a86.waitJS("86's reply stored", `Array.from(document.querySelectorAll('#messages li')).some((m) => m.dataset.role === 'agent' && m.dataset.msgId && m.textContent.includes(`+jsString(canned)+`))`)
	v.waitWidgetMessage("86's reply at the visitor", canned, `m.dataset.role === 'agent' && m.querySelector('.name').textContent === '大美如斯'`)
	a86.waitJS("86's reply read by the visitor", `Array.from(document.querySelectorAll('#messages li')).some((m) => m.dataset.role === 'agent' && m.dataset.state === 'read')`)

	// ---- typing, both ways ----
	v.widgetType("订单号是")
	a86.waitJS("the visitor typing", `!document.getElementById('typing').hidden`)
	a86.focus("input")
	a86.keys("好的")
	v.waitJS("the agent typing", widgetJS(`!r.getElementById('gw-typing').hidden && r.getElementById('gw-typing').textContent.includes('大美如斯')`))
	v.widgetType(" 20261126")
	v.pressEnter()
	a86.waitJS("the order number", `Array.from(document.querySelectorAll('#messages li')).some((m) => m.textContent.includes('订单号是 20261126'))`)
	a86.keys("，马上为您查")
	a86.pressEnter()
	v.waitWidgetMessage("86's second reply", "好的，马上为您查", `m.dataset.role === 'agent'`)
	shot(v, "visitor-chat")
	shot(a86, "agent86-chat")
	// The other widths: the widget as a floating panel on a desktop, the
	// console stacked on a phone.
	v.resize(1280, 800)
	v.waitJS("the panel floating on a desktop", widgetJS(`!r.getElementById('gw-panel').hidden &&
		r.getElementById('gw-panel').getBoundingClientRect().width < innerWidth / 2`))
	shot(v, "visitor-chat-desktop")
	v.resize(viewportWidth, viewportHeight)
	a86.resize(viewportWidth, viewportHeight)
	a86.waitJS("the console stacked on a phone", `document.getElementById('messages').getBoundingClientRect().width > innerWidth * 0.9`)
	shot(a86, "agent86-chat-phone")
	a86.resize(1280, 800)

	// ---- images, both ways, as thumbnails ----
	img := filepath.Join(t.TempDir(), "receipt.png")
	writeTestPNG(t, img, 640, 480)
	v.upload(`document.getElementById('gatewire-widget').shadowRoot.getElementById('gw-file')`, img)
	v.waitJS("the visitor's image sent", widgetJS(`Array.from(r.querySelectorAll('#gw-messages li')).some((m) => m.dataset.role === 'visitor' &&
		m.dataset.msgId && m.querySelector('img.thumb') && m.querySelector('img.thumb').complete && m.querySelector('img.thumb').naturalWidth === 320)`))
	a86.waitJS("the visitor's image at the agent", `Array.from(document.querySelectorAll('#messages li')).some((m) => m.dataset.role === 'visitor' &&
		m.querySelector('img.thumb') && m.querySelector('img.thumb').complete && m.querySelector('img.thumb').naturalWidth === 320)`)
	a86.upload(`document.getElementById('file')`, img)
	v.waitJS("the agent's image at the visitor", widgetJS(`Array.from(r.querySelectorAll('#gw-messages li')).some((m) => m.dataset.role === 'agent' &&
		m.querySelector('img.thumb') && m.querySelector('img.thumb').complete && m.querySelector('img.thumb').naturalWidth === 320)`))

	// ---- transfer to 88 ----
	a88 := site.openAgent(t, b, "agent88", site.console88, "88")
	t.Cleanup(func() { shot(a88, "agent88-final") })
	a88.setPresence("online")
	a86.waitJS("88 offered as a transfer target", `document.querySelector('#transfer-to option[value="88"]') !== null`)
	mustEvalJS[bool](a86, `(() => { document.getElementById('transfer-to').value = '88'; return true; })()`)
	a86.click("transfer")
	const transferLine = "会话已由 大美如斯 转接给 悦悦"
	a86.waitJS("the transfer line at 86, and the conversation gone from Mine", `Array.from(document.querySelectorAll('#messages li')).some((m) => m.dataset.code === 'transferred' && m.textContent === `+jsString(transferLine)+`) && `+conv+` === null`)
	a88.waitJS("88 notified, the conversation in Mine", `document.querySelector('.toast') !== null && `+conv+` !== null && `+conv+`.dataset.agent === '88'`)
	shot(a88, "agent88-notified")
	a88.clickCSS(fmt.Sprintf(`#conversations li[data-visitor=%q]`, visitorUID))
	a88.waitJS("the whole history at 88", `(() => { const t = Array.from(document.querySelectorAll('#messages li')).map((m) => m.textContent).join('|');
		return t.includes(`+jsString(first)+`) && t.includes(`+jsString(canned)+`) && t.includes(`+jsString(transferLine)+`); })()`)
	v.waitWidgetMessage("the transfer line at the visitor", transferLine, `m.dataset.role === 'system'`)
	v.waitJS("the visitor sees 88", widgetJS(`r.getElementById('gw-title').textContent === '悦悦'`))
	const from88 = "您好，我是悦悦，接下来由我为您服务"
	a88.focus("input")
	a88.keys(from88)
	a88.pressEnter()
	v.waitWidgetMessage("88's reply at the visitor", from88, `m.dataset.role === 'agent' && m.querySelector('.name').textContent === '悦悦'`)
	shot(a88, "agent88-chat")

	// ---- the visitor reloads: same identity, same history ----
	v.reload()
	v.waitJS("the widget back online", `(() => { const h = document.getElementById('gatewire-widget'); return !!h && h.dataset.state === 'online'; })()`)
	if uid := mustEvalJS[string](v, `document.getElementById('gatewire-widget').dataset.uid`); uid != visitorUID {
		t.Fatalf("after a reload the visitor is %s, was %s", uid, visitorUID)
	}
	v.widget(`r.getElementById('gw-launcher').click()`)
	v.waitWidgetMessage("the history after the reload", from88, `m.dataset.role === 'agent'`)
	v.waitWidgetMessage("the first message after the reload", first, `m.dataset.role === 'visitor' && m.dataset.state === 'read'`)

	// ---- agent 88 reloads: still signed in and online, the conversation theirs ----
	a88.reload()
	a88.waitJS("88's console back, online", `document.getElementById('conn').dataset.state === 'online' && document.body.dataset.presence === 'online'`)
	a88.waitJS("the conversation still 88's", conv+` !== null && `+conv+`.dataset.agent === '88'`)
	a88.clickCSS(fmt.Sprintf(`#conversations li[data-visitor=%q]`, visitorUID))
	a88.waitJS("the history after 88's reload", `(() => { const t = Array.from(document.querySelectorAll('#messages li')).map((m) => m.textContent).join('|');
		return t.includes(`+jsString(first)+`) && t.includes(`+jsString(from88)+`) && t.includes(`+jsString(transferLine)+`); })()`)
	const afterReload = "刷新之后我还在"
	a88.focus("input")
	a88.keys(afterReload)
	a88.pressEnter()
	v.waitWidgetMessage("88's message after both reloads", afterReload, `m.dataset.role === 'agent'`)

	// ---- English ----
	v.widgetLang("en")
	v.waitJS("the widget in English", widgetJS(`r.getElementById('gw-input').placeholder === 'Type a message…' &&
		Array.from(r.querySelectorAll('#gw-messages li')).some((m) => m.textContent === '大美如斯 transferred the conversation to 悦悦')`))
	shot(v, "visitor-english")

	for _, tb := range []*tab{v, a86, a88} {
		tb.checkClean()
	}
}

// widgetJS wraps a boolean expression over the widget's shadow root r.
func widgetJS(expr string) string {
	return `(() => { const h = document.getElementById('gatewire-widget'); if (!h || !h.shadowRoot) return false; const r = h.shadowRoot; return !!(` + expr + `); })()`
}

// widget runs a statement with the widget's shadow root as r.
func (tb *tab) widget(stmt string) {
	tb.t.Helper()
	mustEvalJS[any](tb, `(() => { const r = document.getElementById('gatewire-widget').shadowRoot; `+stmt+`; return null; })()`)
}

// widgetLang switches the widget's language with its switch.
func (tb *tab) widgetLang(lang string) {
	tb.t.Helper()
	tb.widget(`const s = r.getElementById('gw-lang'); s.value = '` + lang + `'; s.dispatchEvent(new Event('change'))`)
}

// widgetType focuses a field of the widget (the message box by default)
// and types text as key events.
func (tb *tab) widgetType(text string, id ...string) {
	tb.t.Helper()
	field := "gw-input"
	if len(id) > 0 {
		field = id[0]
	}
	tb.widget(`r.getElementById('` + field + `').focus()`)
	tb.keys(text)
}

// waitWidgetMessage waits for a message of the widget showing text whose
// li m satisfies cond.
func (tb *tab) waitWidgetMessage(what, text, cond string) {
	tb.t.Helper()
	tb.waitJS(what, widgetJS(`Array.from(r.querySelectorAll('#gw-messages li')).some((m) => m.textContent.includes(`+jsString(text)+`) && (`+cond+`))`))
}

// focus focuses the element with the given id.
func (tb *tab) focus(id string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, evalTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.ID(id))); err != nil {
		tb.t.Fatalf("%s: focus #%s: %v", tb.name, id, err)
	}
}

// keys types text into the focused element as key events.
func (tb *tab) keys(text string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.KeyEvent(text)); err != nil {
		tb.t.Fatalf("%s: type %q: %v", tb.name, text, err)
	}
}

// upload sets the file of the file input a JS path names, as a user picking
// it does.
func (tb *tab) upload(jsPath, file string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.SetUploadFiles(chromedp.JSPath(jsPath), []string{file})); err != nil {
		tb.t.Fatalf("%s: upload %s: %v", tb.name, file, err)
	}
}

// resize emulates a viewport of w×h CSS pixels: a phone's (at scale 2)
// when it is no wider than viewportWidth, else a desktop's.
func (tb *tab) resize(w, h int64) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, evalTimeout)
	defer cancel()
	scale := 1.0
	if w <= viewportWidth {
		scale = 2
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h, chromedp.EmulateScale(scale))); err != nil {
		tb.t.Fatalf("%s: resize to %dx%d: %v", tb.name, w, h, err)
	}
}

// openTokenAgent opens the agent console on a desktop-sized viewport,
// signed in with a bind token in the URL's fragment as an application
// would, and switches it to Chinese.
func openTokenAgent(t *testing.T, b *browser, name, url, token string) *tab {
	t.Helper()
	tb := b.open(t, name, url+"#token="+token)
	tb.resize(1280, 800)
	tb.waitJS("the console connected, offline", `document.getElementById('conn').dataset.state === 'online' && document.body.dataset.presence === 'offline'`)
	if location := mustEvalJS[string](tb, `location.href`); strings.Contains(location, token) {
		t.Errorf("%s: the token stays in the address bar: %s", name, location)
	}
	mustEvalJS[bool](tb, `(() => { const s = document.getElementById('lang'); s.value = 'zh-CN'; s.dispatchEvent(new Event('change')); return true; })()`)
	tb.waitJS("the console in Chinese", `document.getElementById('presence').options[0].textContent !== 'Online'`)
	return tb
}

// openDemoAgent opens the agent console on a desktop-sized viewport and
// signs in as the demo agent uid.
func openDemoAgent(t *testing.T, b *browser, name, url, uid string) *tab {
	t.Helper()
	tb := b.open(t, name, url)
	tb.resize(1280, 800)
	tb.waitJS("the demo login", `document.querySelector('#login-agents button[data-uid="`+uid+`"]') !== null`)
	// The browser speaks English; the agents here read Chinese.
	if got := mustEvalJS[string](tb, `document.querySelector('#login h1').textContent`); got != "Agent console" {
		t.Errorf("%s: the login says %q, want English", name, got)
	}
	mustEvalJS[bool](tb, `(() => { const s = document.getElementById('login-lang'); s.value = 'zh-CN'; s.dispatchEvent(new Event('change')); return true; })()`)
	tb.waitJS("the login in Chinese", `document.querySelector('#login h1').textContent === '客服工作台' && document.querySelector('#login-agents button[data-uid="`+uid+`"]') !== null`)
	tb.screenshot(artifactsDir(t), "desk-allinone-"+name+"-login.png")
	tb.clickCSS(`#login-agents button[data-uid="` + uid + `"]`)
	tb.waitJS("the console connected, offline", `document.getElementById('conn').dataset.state === 'online' && document.body.dataset.presence === 'offline'`)
	return tb
}

// setPresence switches the console's presence.
func (tb *tab) setPresence(p string) {
	tb.t.Helper()
	mustEvalJS[bool](tb, `(() => { const s = document.getElementById('presence'); s.value = '`+p+`'; s.dispatchEvent(new Event('change')); return true; })()`)
	tb.waitJS("presence "+p, `document.body.dataset.presence === '`+p+`'`)
}

// writeTestPNG writes a w×h PNG with a gradient to path.
func writeTestPNG(t *testing.T, path string, w, h int) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 255 / w), G: uint8(y * 255 / h), B: 180, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
