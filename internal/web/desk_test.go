package web_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/bindtoken"
	"github.com/gatewire/gatewire/internal/clientip"
	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/web"
)

var deskSecret = []byte("desk-web-test-secret-0123456789abcdef")

func newDeskServer(t *testing.T, maxBytes int64, mods ...func(*web.DeskConfig)) (*httptest.Server, store.ImageStore) {
	t.Helper()
	v, err := bindtoken.NewVerifier(deskSecret)
	if err != nil {
		t.Fatal(err)
	}
	images, err := store.NewDirImages(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := web.Config{Desk: &web.DeskConfig{
		SignToken:     func(uid string, ttl time.Duration) (string, error) { return bindtoken.Sign(deskSecret, uid, ttl) },
		VerifyToken:   v.Verify,
		Origins:       []string{"shop.test", "*.shop.test"},
		Images:        images,
		MaxImageBytes: maxBytes,
	}}
	for _, mod := range mods {
		mod(cfg.Desk)
	}
	return newServer(t, cfg, demo), images
}

func post(t *testing.T, srv *httptest.Server, path, origin, token, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

type visitorToken struct {
	UID       string `json:"uid"`
	Token     string `json:"token"`
	ExpiresIn int64  `json:"expires_in"`
}

// TestVisitorToken: allowlisted sites get a new visitor identity, and keep
// it by presenting their token again; other sites are refused.
func TestVisitorToken(t *testing.T) {
	srv, _ := newDeskServer(t, 0)
	resp, body := post(t, srv, "/desk/visitor", "https://shop.test", "", "application/json", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.test" {
		t.Fatalf("status %d, ACAO %q: %s", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), body)
	}
	var first visitorToken
	if err := json.Unmarshal(body, &first); err != nil || !strings.HasPrefix(first.UID, "v_") || len(first.UID) != 26 || first.ExpiresIn != int64(web.VisitorTokenTTL/time.Second) {
		t.Fatalf("visitor token %s: %v", body, err)
	}
	v, _ := bindtoken.NewVerifier(deskSecret)
	if uid, err := v.Verify(first.Token); err != nil || uid != first.UID {
		t.Fatalf("token for %q, %v; want %s", uid, err, first.UID)
	}
	// Renewal keeps the uid.
	req, _ := json.Marshal(map[string]string{"token": first.Token})
	_, body = post(t, srv, "/desk/visitor", "https://www.shop.test", "", "application/json", req)
	var again visitorToken
	if err := json.Unmarshal(body, &again); err != nil || again.UID != first.UID {
		t.Fatalf("renewal %s, want uid %s", body, first.UID)
	}
	// A token of a non-visitor (an agent's) or a bad one gives a new visitor.
	agentTok, _ := bindtoken.Sign(deskSecret, "86", time.Hour)
	for _, tok := range []string{agentTok, "garbage"} {
		req, _ := json.Marshal(map[string]string{"token": tok})
		_, body = post(t, srv, "/desk/visitor", "https://shop.test", "", "application/json", req)
		var other visitorToken
		if err := json.Unmarshal(body, &other); err != nil || other.UID == first.UID || other.UID == "86" || !strings.HasPrefix(other.UID, "v_") {
			t.Fatalf("with token %q: %s", tok[:5], body)
		}
	}
	// Other sites are refused; so are other methods.
	for _, origin := range []string{"https://evil.test", "https://shop.test.evil.test", "null"} {
		if resp, _ := post(t, srv, "/desk/visitor", origin, "", "", nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %s: status %d, want 403", origin, resp.StatusCode)
		}
	}
	if resp, _ := get(t, srv, "/desk/visitor"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}
	// The preflight of a JSON POST.
	pre, _ := http.NewRequest(http.MethodOptions, srv.URL+"/desk/images", nil)
	pre.Header.Set("Origin", "https://shop.test")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	presp, err := srv.Client().Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != http.StatusNoContent || !strings.Contains(presp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: status %d, headers %v", presp.StatusCode, presp.Header)
	}
}

// TestDeskRateLimits: one client address gets at most the limit's burst of
// visitor tokens and uploads; preflights are not counted; behind a trusted
// proxy, the address X-Forwarded-For names is the one counted.
func TestDeskRateLimits(t *testing.T) {
	srv, _ := newDeskServer(t, 0, func(dc *web.DeskConfig) {
		dc.VisitorTokens = clientip.NewLimiter(1, 3) // one a minute: no refill during the test
		dc.Uploads = clientip.NewLimiter(1, 1)
		dc.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	preflight := func(path string) {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+path, nil)
		req.Header.Set("Origin", "https://shop.test")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("preflight of %s: %s", path, resp.Status)
		}
	}
	for range 5 {
		preflight("/desk/visitor")
	}
	var token string
	for i := range 3 {
		resp, body := post(t, srv, "/desk/visitor", "https://shop.test", "", "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("visitor token %d: %s %s", i+1, resp.Status, body)
		}
		var v visitorToken
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		token = v.Token
	}
	resp, body := post(t, srv, "/desk/visitor", "https://shop.test", "", "", nil)
	var refusal struct{ Error string }
	_ = json.Unmarshal(body, &refusal)
	if resp.StatusCode != http.StatusTooManyRequests || refusal.Error != "rate_limited" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th visitor token: %s %s (Retry-After %q), want 429 rate_limited", resp.Status, body, resp.Header.Get("Retry-After"))
	}
	// Another client behind the same (trusted) proxy has its own budget.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/desk/visitor", nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.9")
	other, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	other.Body.Close()
	if other.StatusCode != http.StatusOK {
		t.Errorf("a visitor token for another client behind the proxy: %s", other.Status)
	}

	img := pngOf(t, 10, 10)
	if resp, body := post(t, srv, "/desk/images", "https://shop.test", token, "image/png", img); resp.StatusCode != http.StatusCreated {
		t.Fatalf("first upload: %s %s", resp.Status, body)
	}
	resp, body = post(t, srv, "/desk/images", "https://shop.test", token, "image/png", img)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "rate_limited") {
		t.Errorf("second upload: %s %s, want 429 rate_limited", resp.Status, body)
	}
}

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x), G: uint8(y), B: 200, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestImageUpload: uploads need a bind token, are limited in size, type and
// dimensions, and come back with a thumbnail.
func TestImageUpload(t *testing.T) {
	srv, images := newDeskServer(t, 64<<10)
	tok, _ := bindtoken.Sign(deskSecret, "v_abc", time.Hour)
	photo := pngOf(t, 800, 400)
	if resp, _ := post(t, srv, "/desk/images", "", "", "image/png", photo); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", resp.StatusCode)
	}
	if resp, _ := post(t, srv, "/desk/images", "", "bad", "image/png", photo); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("with a bad token: %d", resp.StatusCode)
	}
	if resp, _ := post(t, srv, "/desk/images", "https://evil.test", tok, "image/png", photo); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("from another site: %d", resp.StatusCode)
	}
	for name, tc := range map[string]struct {
		body   []byte
		status int
		code   string
	}{
		"too large": {bytes.Repeat([]byte{0x89}, 65<<10), http.StatusRequestEntityTooLarge, "image_too_large"},
		"html":      {[]byte("<html><script>alert(1)</script></html>"), http.StatusUnsupportedMediaType, "image_type"},
		"svg":       {[]byte(`<svg xmlns="http://www.w3.org/2000/svg"></svg>`), http.StatusUnsupportedMediaType, "image_type"},
		"broken":    {append([]byte("\x89PNG\r\n\x1a\n"), 1, 2, 3), http.StatusUnsupportedMediaType, "image_invalid"},
		"empty":     {nil, http.StatusBadRequest, "image_empty"},
	} {
		resp, body := post(t, srv, "/desk/images", "https://shop.test", tok, "image/png", tc.body)
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != tc.status || e.Error != tc.code {
			t.Errorf("%s: status %d %s, want %d %s", name, resp.StatusCode, body, tc.status, tc.code)
		}
	}
	resp, body := post(t, srv, "/desk/images", "https://shop.test", tok, "application/octet-stream", photo)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	var up struct {
		ID, URL, Thumb string
		Width, Height  int
	}
	if err := json.Unmarshal(body, &up); err != nil || up.Width != 800 || up.Height != 400 || up.URL != "/desk/images/"+up.ID || up.Thumb != up.URL+"/thumb" {
		t.Fatalf("upload answer %s: %v", body, err)
	}
	stored, err := images.Image(t.Context(), up.ID, false)
	if err != nil || stored.Owner != "v_abc" || stored.ContentType != "image/png" {
		t.Fatalf("stored %+v, %v", stored.Owner, err)
	}
	resp, full := get(t, srv, up.URL)
	if resp.StatusCode != http.StatusOK || full != string(photo) || resp.Header.Get("Content-Type") != "image/png" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("full image: %d %v", resp.StatusCode, resp.Header)
	}
	resp, thumb := get(t, srv, up.Thumb)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("thumbnail: %d", resp.StatusCode)
	}
	cfg, err := png.DecodeConfig(strings.NewReader(thumb))
	if err != nil || cfg.Width != 320 || cfg.Height != 160 {
		t.Fatalf("thumbnail %dx%d, %v; want 320x160", cfg.Width, cfg.Height, err)
	}
	if resp, _ := get(t, srv, "/desk/images/ffff"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown image: %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv, "/desk/images/..%2f..%2fetc"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("path image id: %d", resp.StatusCode)
	}
}

// TestImageDimensions: a small file claiming a huge canvas is refused
// before it is decoded.
func TestImageDimensions(t *testing.T) {
	srv, _ := newDeskServer(t, 0)
	tok, _ := bindtoken.Sign(deskSecret, "v_abc", time.Hour)
	huge := pngOf(t, 1, 1)
	// Rewrite the IHDR size to 20000×20000, and its CRC.
	copy(huge[16:24], []byte{0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20})
	binary.BigEndian.PutUint32(huge[29:33], crc32.ChecksumIEEE(huge[12:29]))
	resp, body := post(t, srv, "/desk/images", "", tok, "image/png", huge)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "image_dimensions") {
		t.Fatalf("huge canvas: %d %s", resp.StatusCode, body)
	}
}

// TestAgentPage: the console is served with its configuration and a strict
// policy; without a desk there is none.
func TestAgentPage(t *testing.T) {
	srv, _ := newDeskServer(t, 0)
	resp, body := get(t, srv, "/agent")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<script id="gatewire-config" type="application/json">`) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("agent page: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := get(t, srv, "/desk/demo-agents"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("demo agents outside demo mode: %d", resp.StatusCode)
	}
	plain := newServer(t, web.Config{}, demo)
	if resp, _ := get(t, plain, "/agent"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("agent page without a desk: %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv, "/static/widget.js"); resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("widget: %d %v", resp.StatusCode, resp.Header)
	}
}
