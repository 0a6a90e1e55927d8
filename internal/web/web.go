// Package web serves the chat's browser side: the chat page (plain
// HTML/CSS/JS, no build step) under /, its assets under /static/, and
// generated initials avatars under /avatars/<uid>.svg. The page speaks the
// chat protocol over a WebSocket to a gateway. Start with New.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"html"
	"io/fs"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatewire/gatewire/internal/store"
)

//go:embed static
var staticFiles embed.FS

// Config configures the web handler.
type Config struct {
	// WebSocketURL is where the page connects, e.g. "ws://127.0.0.1:8282/";
	// empty means the page's own host (the all-in-one serves the page and
	// the WebSocket on one port).
	WebSocketURL string
	// DemoTokens, when set, serves GET /demo/token?uid=<uid>, which hands
	// out a bind token for any uid, and makes the page use it. Only the
	// all-in-one's demo mode sets it: it lets anyone be anyone.
	DemoTokens func(uid string) (string, error)
	// Desk, when set, serves the customer-service desk: the widget's
	// visitor tokens (POST /desk/visitor), image uploads (POST
	// /desk/images, GET /desk/images/<id>[/thumb]) and the agent console
	// (GET /agent). The widget is /static/widget.js.
	Desk *DeskConfig
}

// UserLookup finds users by uid (store.Store satisfies it).
type UserLookup interface {
	Users(ctx context.Context, uids ...string) (map[string]store.User, error)
}

// New returns the handler serving the page, its assets and avatars.
func New(cfg Config, users UserLookup) http.Handler {
	static, _ := fs.Sub(staticFiles, "static") // cannot fail: the directory is embedded
	mux := http.NewServeMux()
	assets := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || strings.HasSuffix(r.URL.Path, ".html") {
			http.NotFound(w, r) // pages are served only at / and /agent, with their config
			return
		}
		// The assets are public; the widget, on other sites, fetches its
		// language catalogs.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "no-cache")
		assets.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /avatars/{file}", func(w http.ResponseWriter, r *http.Request) {
		serveAvatar(w, r, users)
	})
	if cfg.DemoTokens != nil {
		mux.HandleFunc("GET /demo/token", func(w http.ResponseWriter, r *http.Request) {
			serveDemoToken(w, r, cfg.DemoTokens)
		})
	}
	if cfg.Desk != nil {
		deskRoutes(mux, static, cfg)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		serveHTML(w, static, "index.html", pageCSP, map[string]any{"wsUrl": cfg.WebSocketURL, "demoTokens": cfg.DemoTokens != nil})
	})
	return mux
}

// pageCSP is the chat page's Content-Security-Policy; the agent console's
// also shows images the agent picked before they are uploaded (blob:).
const (
	pageCSP    = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'"
	consoleCSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; style-src 'self'; script-src 'self'"
)

// serveHTML serves a page of static with its configuration injected.
func serveHTML(w http.ResponseWriter, static fs.FS, file, csp string, config map[string]any) {
	page, err := fs.ReadFile(static, file)
	if err != nil {
		http.Error(w, "page missing", http.StatusInternalServerError)
		return
	}
	// json.Marshal escapes <, > and &, so nothing in the value can end the
	// script element; browsers do not decode entities inside it.
	conf, _ := json.Marshal(config)
	out := strings.Replace(string(page), "<!--CONFIG-->",
		`<script id="gatewire-config" type="application/json">`+string(conf)+`</script>`, 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", csp)
	_, _ = w.Write([]byte(out))
}

// maxDemoUID bounds the uid the demo endpoint signs for.
const maxDemoUID = 64

// serveDemoToken answers {"token":"..."} for the query's uid.
func serveDemoToken(w http.ResponseWriter, r *http.Request, sign func(string) (string, error)) {
	uid := r.URL.Query().Get("uid")
	if uid == "" || len(uid) > maxDemoUID || !utf8.ValidString(uid) {
		http.Error(w, fmt.Sprintf("query parameter uid must be 1 to %d bytes of UTF-8", maxDemoUID), http.StatusBadRequest)
		return
	}
	token, err := sign(uid)
	if err != nil {
		http.Error(w, "could not sign a token", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": token})
}

// serveAvatar draws a round avatar with the initial of the user's nickname
// (or uid) on a colour derived from the uid.
func serveAvatar(w http.ResponseWriter, r *http.Request, users UserLookup) {
	uid, ok := strings.CutSuffix(r.PathValue("file"), ".svg")
	if !ok || uid == "" {
		http.NotFound(w, r)
		return
	}
	name := uid
	if users != nil {
		if found, err := users.Users(r.Context(), uid); err == nil && found[uid].Nickname != "" {
			name = found[uid].Nickname
		}
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "max-age=3600")
	fmt.Fprint(w, avatarSVG(uid, name))
}

// avatarSVG returns the SVG of uid's avatar showing the initial of name.
func avatarSVG(uid, name string) string {
	h := fnv.New32a()
	h.Write([]byte(uid))
	hue := h.Sum32() % 360
	initial, _ := utf8.DecodeRuneInString(strings.TrimSpace(name))
	if initial == utf8.RuneError {
		initial = '?'
	}
	initial = unicode.ToUpper(initial)
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">`+
		`<circle cx="32" cy="32" r="32" fill="hsl(%d,55%%,48%%)"/>`+
		`<text x="32" y="32" dy=".35em" text-anchor="middle" font-family="sans-serif" font-size="30" fill="#fff">%s</text></svg>`,
		hue, html.EscapeString(string(initial)))
}
