package web_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/web"
)

// fakeUsers is a UserLookup over a fixed set of users.
type fakeUsers map[string]store.User

func (f fakeUsers) Users(_ context.Context, uids ...string) (map[string]store.User, error) {
	out := make(map[string]store.User)
	for _, uid := range uids {
		if u, ok := f[uid]; ok {
			out[uid] = u
		}
	}
	return out, nil
}

// failingUsers is a UserLookup whose store is down.
type failingUsers struct{}

func (failingUsers) Users(context.Context, ...string) (map[string]store.User, error) {
	return nil, errors.New("store is down")
}

var demo = fakeUsers{
	"85":  {UID: "85", Nickname: "Love violet life"},
	"86":  {UID: "86", Nickname: "大美如斯"},
	"666": {UID: "666", Nickname: "<script>alert(1)</script>"},
	"667": {UID: "667", Nickname: `"&'`},
}

// wantCSP is the policy the page relies on: no inline script, style or
// event handler runs.
const wantCSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'"

func newServer(t *testing.T, cfg web.Config, users web.UserLookup) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(web.New(cfg, users))
	t.Cleanup(srv.Close)
	return srv
}

// get fetches path and returns the response and its body.
func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp, string(body)
}

// configRE finds the config element and its raw text the way an HTML parser
// does: a script element's content is raw text that ends at the first
// "</script" (in any case), and character references in it are not decoded.
var configRE = regexp.MustCompile(`(?is)<script id="gatewire-config" type="application/json">(.*?)</script`)

// pageConfig returns the JSON text of the page's config element, failing t
// when there is not exactly one.
func pageConfig(t *testing.T, page string) string {
	t.Helper()
	all := configRE.FindAllStringSubmatch(page, -1)
	if len(all) != 1 {
		t.Fatalf("page has %d config elements, want 1:\n%s", len(all), page)
	}
	return all[0][1]
}

func TestPage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wsURL string
	}{
		{"own host", ""},
		{"gateway URL", "ws://127.0.0.1:8282/"},
		// A URL that would end the script element if it were pasted in
		// unescaped, and that holds every character HTML escaping touches.
		{"hostile URL", `ws://h/</script><script>alert(1)</script><!--&'"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, web.Config{WebSocketURL: tc.wsURL}, demo)
			resp, page := get(t, srv, "/")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /: status %d, want 200", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type %q, want text/html", ct)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); csp != wantCSP {
				t.Errorf("Content-Security-Policy %q, want %q", csp, wantCSP)
			}
			if strings.Contains(page, "<!--CONFIG-->") {
				t.Error("the <!--CONFIG--> placeholder was not replaced")
			}
			raw := pageConfig(t, page)
			// The page reads the element's textContent with JSON.parse.
			var cfg struct {
				WSURL *string `json:"wsUrl"`
			}
			if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("config element text %q is not JSON as a browser reads it (script content is raw text; "+
					"HTML escaping breaks it, JSON's \\u003c escaping is what keeps it inside the element): %v", raw, err)
			}
			if cfg.WSURL == nil || *cfg.WSURL != tc.wsURL {
				t.Errorf("config %s: wsUrl is not %q", raw, tc.wsURL)
			}
			if strings.Count(strings.ToLower(page), "<script") != 2 {
				t.Errorf("page has %d script elements, want 2 (config and chat.js): the URL broke out of the config element",
					strings.Count(strings.ToLower(page), "<script"))
			}
		})
	}
}

// TestPageMarkup checks that the page works under its CSP: no inline script
// besides the JSON config, no style attribute or element, no event handler
// attribute, no resource from another origin.
func TestPageMarkup(t *testing.T) {
	srv := newServer(t, web.Config{}, demo)
	_, page := get(t, srv, "/")
	for _, want := range []string{
		`<meta name="viewport"`, `lang="zh-CN"`,
		`<script src="static/chat.js" defer></script>`, `<link rel="stylesheet" href="static/chat.css">`,
		`id="title"`, `id="status"`, `id="messages"`, `id="input"`, `id="more"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script(?:\s+(?:id|type)="[^"]*")*\s*>`), // an inline script (the config has id and type)
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\sstyle=`),
		regexp.MustCompile(`(?i)\son[a-z]+=`),
		regexp.MustCompile(`(?i)(?:src|href|action)="(?:https?:)?//`),
	} {
		for _, m := range re.FindAllString(page, -1) {
			if m == `<script id="gatewire-config" type="application/json">` {
				continue
			}
			t.Errorf("page has %q, which its CSP forbids or which loads another origin", m)
		}
	}
}

func TestStatic(t *testing.T) {
	srv := newServer(t, web.Config{}, demo)
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{"/static/chat.js", "javascript", "textContent"},
		{"/static/chat.css", "text/css", "white-space: pre-wrap"},
	} {
		resp, body := get(t, srv, tc.path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", tc.path, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, tc.contentType) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.contentType)
		}
		if !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
	}
	// The script never puts text into the page as HTML.
	_, js := get(t, srv, "/static/chat.js")
	htmlSink := regexp.MustCompile(`\.(?:inner|outer)HTML\s*\+?=|insertAdjacentHTML\s*\(|document\.write|\beval\s*\(|new\s+Function\s*\(|\.html\s*\(`)
	for _, m := range htmlSink.FindAllString(js, -1) {
		t.Errorf("chat.js uses %q", m)
	}
}

// svgDoc is what a test reads from an avatar.
type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	Circle  struct {
		Fill string `xml:"fill,attr"`
	} `xml:"circle"`
	Text string `xml:"text"`
}

func TestAvatar(t *testing.T) {
	for _, tc := range []struct {
		name    string
		users   web.UserLookup
		path    string
		initial string
	}{
		{"latin nickname", demo, "/avatars/85.svg", "L"},
		{"chinese nickname", demo, "/avatars/86.svg", "大"},
		{"unknown uid", demo, "/avatars/999.svg", "9"},
		{"script nickname", demo, "/avatars/666.svg", "<"},
		{"quote nickname", demo, "/avatars/667.svg", `"`},
		{"markup in uid", demo, "/avatars/%3Cimg%20src=x%3E.svg", "<"},
		{"store down", failingUsers{}, "/avatars/86.svg", "8"},
		{"no lookup", nil, "/avatars/abc.svg", "A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, web.Config{}, tc.users)
			resp, body := get(t, srv, tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: status %d, want 200", tc.path, resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "image/svg+xml" {
				t.Errorf("Content-Type %q, want image/svg+xml", ct)
			}
			if strings.Contains(strings.ToLower(body), "<script") || strings.Contains(body, "<img") {
				t.Errorf("avatar carries markup from the name: %s", body)
			}
			var doc svgDoc
			if err := xml.Unmarshal([]byte(body), &doc); err != nil {
				t.Fatalf("avatar is not well-formed SVG: %v\n%s", err, body)
			}
			if doc.Text != tc.initial {
				t.Errorf("avatar shows %q, want %q", doc.Text, tc.initial)
			}
			if doc.Circle.Fill == "" {
				t.Errorf("avatar has no background colour: %s", body)
			}
		})
	}

	srv := newServer(t, web.Config{}, demo)
	_, a1 := get(t, srv, "/avatars/85.svg")
	_, a2 := get(t, srv, "/avatars/85.svg")
	_, b := get(t, srv, "/avatars/86.svg")
	if a1 != a2 {
		t.Error("the same uid got two different avatars")
	}
	if a1 == b {
		t.Error("85 and 86 got the same avatar")
	}
}

func TestNotFound(t *testing.T) {
	srv := newServer(t, web.Config{}, demo)
	for _, path := range []string{
		"/nope", "/index.html", "/chat.js", "/static/nope.js", "/avatars/85.png", "/avatars/.svg", "/avatars/", "/ws",
	} {
		resp, _ := get(t, srv, path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
	}
}

// TestDemoTokens: /demo/token exists only when Config.DemoTokens is set,
// signs for the uid asked, refuses a bad uid, and the page is told.
func TestDemoTokens(t *testing.T) {
	off := newServer(t, web.Config{}, demo)
	if resp, _ := get(t, off, "/demo/token?uid=85"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("without demo tokens: GET /demo/token status %d, want 404", resp.StatusCode)
	}
	if _, page := get(t, off, "/"); !strings.Contains(pageConfig(t, page), `"demoTokens":false`) {
		t.Errorf("page config %s, want demoTokens false", pageConfig(t, page))
	}

	on := newServer(t, web.Config{DemoTokens: func(uid string) (string, error) { return "token-for-" + uid, nil }}, demo)
	resp, body := get(t, on, "/demo/token?uid=%E5%A4%A7")
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(body) != `{"token":"token-for-大"}` || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET /demo/token?uid=大: status %d, body %s, Cache-Control %q", resp.StatusCode, body, resp.Header.Get("Cache-Control"))
	}
	for _, q := range []string{"", "?uid=", "?uid=" + strings.Repeat("u", 65), "?uid=%ff"} {
		if resp, _ := get(t, on, "/demo/token"+q); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /demo/token%s: status %d, want 400", q, resp.StatusCode)
		}
	}
	if _, page := get(t, on, "/"); !strings.Contains(pageConfig(t, page), `"demoTokens":true`) {
		t.Errorf("page config %s, want demoTokens true", pageConfig(t, page))
	}
}
