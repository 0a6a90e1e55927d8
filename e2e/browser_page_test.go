package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Browser tests drive the chat page in headless Chromium through chromedp.
// Each test starts its own browser with a fresh profile; each user gets a tab
// in a browser context of its own (no shared storage), sized like a phone.

// chromiumPath is where the tests expect Chromium (Debian's package).
const chromiumPath = "/usr/bin/chromium"

// Browser timeouts. They are generous: they bound waits, they do not
// measure speed.
const (
	// pageWait bounds how long a test waits for the page to show something.
	pageWait = 15 * time.Second
	// evalTimeout bounds one DevTools call.
	evalTimeout = 10 * time.Second
	// pollEvery is how often a wait looks at the page again.
	pollEvery = 100 * time.Millisecond
)

// The viewport of every tab: a phone.
const (
	viewportWidth  = 390
	viewportHeight = 760
)

// browser is one headless Chromium process.
type browser struct {
	ctx context.Context // the first tab's context; new tabs derive from it
}

// needChromium returns the Chromium binary, skipping the test when it is
// missing on a developer's machine and failing it in CI (CI set).
func needChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found; CI requires it (apt-get install -y chromium): %v", chromiumPath, err)
		}
		t.Skipf("%s not found (apt-get install -y chromium): %v", chromiumPath, err)
	}
	return chromiumPath
}

// startBrowser starts headless Chromium with a fresh profile; it is closed,
// and waited for, when t ends.
func startBrowser(t *testing.T, execPath string) *browser {
	t.Helper()
	profile := t.TempDir() // removed after the browser's cleanup below
	logFile, err := os.Create(filepath.Join(t.TempDir(), "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		// Both users' tabs are in the foreground at once: nothing of
		// either may be throttled as a background tab.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(viewportWidth, viewportHeight),
		chromedp.CombinedOutput(logFile),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		closeCtx, done := context.WithTimeout(ctx, 10*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close browser: %v", err)
		}
		done()
		cancel()
		cancelAlloc() // waits for the process
		_ = logFile.Close()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", execPath, err)
	}
	return &browser{ctx: ctx}
}

// tab is one user's page.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu         sync.Mutex
	dialogs    []string // messages of JavaScript dialogs that opened
	exceptions []string // uncaught exceptions
	errors     []string // console errors and browser log errors
}

// open opens url in a new tab in a browser context of its own. The tab
// records JavaScript dialogs (and dismisses them, so that the page goes on),
// uncaught exceptions and console errors; it is closed when t ends.
func (b *browser) open(t *testing.T, name, url string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	tb := &tab{t: t, name: name, ctx: ctx}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(viewportWidth, viewportHeight, chromedp.EmulateScale(2))); err != nil {
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	console := chromedp.Console(ctx)
	wg.Go(func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.dialogs = append(tb.dialogs, ev.Type.String()+": "+ev.Message)
			tb.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	})
	wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			tb.mu.Lock()
			switch {
			case m.IsException():
				tb.exceptions = append(tb.exceptions, fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m.Text))
			case m.Type == chromedp.ConsoleError:
				tb.errors = append(tb.errors, fmt.Sprintf("%s %s", m.Source, m.Text))
			}
			tb.mu.Unlock()
		}
	})
	tb.navigate(url)
	return tb
}

// navigate loads url in the tab and waits for its load event.
func (tb *tab) navigate(url string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		tb.t.Fatalf("%s: navigate to %s: %v", tb.name, url, err)
	}
}

// reload reloads the page and waits for its load event.
func (tb *tab) reload() {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		tb.t.Fatalf("%s: reload: %v", tb.name, err)
	}
}

// evalJS evaluates a JavaScript expression in the page and decodes its value
// into a T.
func evalJS[T any](tb *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, evalTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// mustEvalJS is evalJS failing the test on an error.
func mustEvalJS[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := evalJS[T](tb, expr)
	if err != nil {
		tb.t.Fatalf("%s: evaluate %s: %v", tb.name, expr, err)
	}
	return v
}

// bubble is one message as the page shows it.
type bubble struct {
	MsgID  string `json:"msgId"`
	CMID   string `json:"cmid"`
	From   string `json:"from"`
	State  string `json:"state"`
	Side   string `json:"side"` // "self" or "peer", from the bubble's class
	Text   string `json:"text"` // the bubble's textContent
	Label  string `json:"label"`
	Date   string `json:"date"`
	Avatar string `json:"avatar"` // the data-uid of the bubble's avatar
	// AvatarOK is true once the avatar image loaded.
	AvatarOK bool `json:"avatarOk"`
	// Children counts the element children of the text bubble (0: text only).
	Children int `json:"children"`
}

// pageView is what the page shows.
type pageView struct {
	Status  string   `json:"status"`
	Title   string   `json:"title"`
	More    bool     `json:"more"`
	Bubbles []bubble `json:"bubbles"`
}

// viewJS reads a pageView from the page.
const viewJS = `(() => {
	const q = (s) => document.querySelector(s);
	return {
		status: q('#status') ? q('#status').dataset.state || '' : '',
		title: q('#title') ? q('#title').textContent : '',
		more: q('#more') ? !q('#more').hidden : false,
		bubbles: Array.from(document.querySelectorAll('#messages > li')).map((li) => {
			const img = li.querySelector('img.avatar');
			const bub = li.querySelector('.bubble');
			return {
				msgId: li.dataset.msgId || '',
				cmid: li.dataset.cmid || '',
				from: li.dataset.from || '',
				state: li.dataset.state || '',
				side: li.classList.contains('msg-self') ? 'self' : (li.classList.contains('msg-peer') ? 'peer' : ''),
				text: bub ? bub.textContent : '',
				label: (li.querySelector('.state') || {}).textContent || '',
				date: (li.querySelector('.time') || {}).textContent || '',
				avatar: img ? img.dataset.uid || '' : '',
				avatarOk: !!(img && img.complete && img.naturalWidth > 0),
				children: bub ? bub.children.length : -1,
			};
		}),
	};
})()`

// view returns what the page shows now.
func (tb *tab) view() pageView {
	tb.t.Helper()
	return mustEvalJS[pageView](tb, viewJS)
}

// describe renders the page's state for a failure message.
func (tb *tab) describe() string {
	v, err := evalJS[pageView](tb, viewJS)
	if err != nil {
		return fmt.Sprintf("(cannot read the page: %v)", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: status %q, title %q, %d bubbles:", tb.name, v.Status, v.Title, len(v.Bubbles))
	for _, bb := range v.Bubbles {
		fmt.Fprintf(&b, "\n  [%s %s from %s, %s] %q", bb.MsgID, bb.Side, bb.From, bb.State, bb.Text)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, e := range tb.exceptions {
		fmt.Fprintf(&b, "\n  exception: %s", e)
	}
	for _, e := range tb.errors {
		fmt.Fprintf(&b, "\n  console error: %s", e)
	}
	return b.String()
}

// waitView polls the page until cond holds for what it shows and returns
// that view; it fails the test after timeout.
func (tb *tab) waitView(timeout time.Duration, what string, cond func(pageView) bool) pageView {
	tb.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		v, err := evalJS[pageView](tb, viewJS)
		if err == nil && cond(v) {
			return v
		}
		lastErr = err
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: no %s within %v (last error: %v)\n%s", tb.name, what, timeout, lastErr, tb.describe())
		}
		time.Sleep(pollEvery)
	}
}

// waitOnline waits until the page's status is online.
func (tb *tab) waitOnline() {
	tb.t.Helper()
	tb.waitView(pageWait, "online status", func(v pageView) bool { return v.Status == "online" })
}

// waitBubble waits for a bubble showing exactly text that satisfies cond and
// returns it.
func (tb *tab) waitBubble(what, text string, cond func(bubble) bool) bubble {
	tb.t.Helper()
	var found bubble
	tb.waitView(pageWait, what, func(v pageView) bool {
		for _, b := range v.Bubbles {
			if b.Text == text && cond(b) {
				found = b
				return true
			}
		}
		return false
	})
	return found
}

// typeText focuses the send box and types text; "\n" in text is typed as
// Shift+Enter, which makes a new line.
func (tb *tab) typeText(text string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, pageWait)
	defer cancel()
	steps := []chromedp.Action[chromedp.Void]{chromedp.Focus(chromedp.ID("input"))}
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			steps = append(steps, chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierShift)))
		}
		if line != "" {
			steps = append(steps, chromedp.SendKeys(chromedp.ID("input"), line))
		}
	}
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: type %q: %v", tb.name, text, err)
	}
	if got := mustEvalJS[string](tb, `document.getElementById('input').value`); got != text {
		tb.t.Fatalf("%s: the send box holds %q after typing, want %q", tb.name, got, text)
	}
}

// pressEnter presses Enter alone in the focused send box: a key down and a
// key up, as a keyboard does (no separate char event, which would type a
// new line where the page did not cancel it).
func (tb *tab) pressEnter() {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, evalTimeout)
	defer cancel()
	enter := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
				Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err := chromedp.Do(ctx, enter); err != nil {
		tb.t.Fatalf("%s: press Enter: %v", tb.name, err)
	}
}

// send types text and sends it with Enter; the send box must be empty
// afterwards.
func (tb *tab) send(text string) {
	tb.t.Helper()
	tb.typeText(text)
	tb.pressEnter()
	tb.waitView(pageWait, "own bubble for "+fmt.Sprintf("%q", text), func(v pageView) bool {
		for _, b := range v.Bubbles {
			if b.Text == text && b.Side == "self" {
				return true
			}
		}
		return false
	})
	if got := mustEvalJS[string](tb, `document.getElementById('input').value`); got != "" {
		tb.t.Errorf("%s: the send box holds %q after sending, want it empty", tb.name, got)
	}
}

// click clicks the element with the given id, as a user does.
func (tb *tab) click(id string) {
	tb.t.Helper()
	tb.clickOn("#"+id, func() chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.ID(id)) })
}

// fill types value into the input with the given id.
func (tb *tab) fill(id, value string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, evalTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID(id), value)); err != nil {
		tb.t.Fatalf("%s: type %q into #%s: %v", tb.name, value, id, err)
	}
}

// clickCSS clicks the first element matching a CSS selector.
func (tb *tab) clickCSS(sel string) {
	tb.t.Helper()
	tb.clickOn(sel, func() chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) })
}

// staleNode is what the browser answers a click on a node the page has
// replaced since chromedp found it.
const staleNode = "Could not find node with given id"

// clickOn runs the mouse click click makes, on the element named what. A
// page that renders a list again (the console's conversations, as presence
// and activity arrive) may replace the node between chromedp's query and
// its click; the click then finds the element again, until evalTimeout.
func (tb *tab) clickOn(what string, click func() chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, evalTimeout)
	defer cancel()
	for {
		err := chromedp.Do(ctx, click())
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), staleNode) || ctx.Err() != nil {
			tb.t.Fatalf("%s: click %s: %v\n%s", tb.name, what, err, tb.describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkClean fails the test if a JavaScript dialog opened or an exception
// went uncaught in the tab.
func (tb *tab) checkClean() {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, d := range tb.dialogs {
		tb.t.Errorf("%s: a JavaScript dialog opened: %s", tb.name, d)
	}
	for _, e := range tb.exceptions {
		tb.t.Errorf("%s: uncaught exception: %s", tb.name, e)
	}
	for _, e := range tb.errors {
		if strings.Contains(e, "Content Security Policy") {
			tb.t.Errorf("%s: the page broke its Content-Security-Policy: %s", tb.name, e)
		} else {
			tb.t.Logf("%s: console error: %s", tb.name, e)
		}
	}
}

// screenshot saves a PNG of the tab as <dir>/<file>.
func (tb *tab) screenshot(dir, file string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, evalTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Errorf("%s: screenshot: %v", tb.name, err)
		return
	}
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Errorf("%s: save screenshot: %v", tb.name, err)
		return
	}
	tb.t.Logf("%s: screenshot %s", tb.name, path)
}

// artifactsDir returns the directory for the test's screenshots: the
// environment variable ARTIFACTS_DIR, else gatewire-artifacts in the system's
// temporary directory. It outlives the test, so that a person can look.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "gatewire-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create artifacts directory: %v", err)
	}
	t.Logf("screenshots go to %s", dir)
	return dir
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
