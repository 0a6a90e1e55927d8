package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // decoders of the image types the desk accepts
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"time"

	"golang.org/x/image/draw"

	"github.com/gatewire/gatewire/internal/clientip"
	"github.com/gatewire/gatewire/internal/store"
)

// DeskConfig configures the customer-service desk's HTTP side: the
// widget's visitor tokens, image uploads, and the agent console.
type DeskConfig struct {
	// SignToken signs a bind token for uid valid for ttl (required).
	SignToken func(uid string, ttl time.Duration) (string, error)
	// VerifyToken returns the uid of a valid bind token (required).
	VerifyToken func(token string) (string, error)
	// Origins are the host patterns (as the gateway's -origins: path.Match
	// on host[:port], case-insensitive) of the sites allowed to embed the
	// widget, besides the server's own host.
	Origins []string
	// Images stores uploads (required).
	Images store.ImageStore
	// MaxImageBytes bounds an upload; zero means DefaultMaxImageBytes.
	MaxImageBytes int64
	// Agents lists the agents for the console's demo login; only the
	// all-in-one's demo mode sets it.
	Agents func(ctx context.Context) ([]store.AgentStatus, error)
	// VisitorTokens and Uploads limit POST /desk/visitor and POST
	// /desk/images per client address; nil means no limit.
	VisitorTokens, Uploads *clientip.Limiter
	// TrustedProxies are the load balancers whose X-Forwarded-For names
	// the client address the limits count.
	TrustedProxies []netip.Prefix
	// Log receives upload failures; nil discards them.
	Log *slog.Logger
}

// Upload limits.
const (
	// DefaultMaxImageBytes is the default upload limit.
	DefaultMaxImageBytes = 5 << 20
	// maxImageSide and maxImagePixels refuse images whose decoding would
	// take too much memory (a small file may claim a huge canvas).
	maxImageSide   = 8192
	maxImagePixels = 24 << 20
	// thumbSide is the longest side of a thumbnail.
	thumbSide = 320
)

// VisitorTokenTTL is how long a widget's visitor token is valid; the widget
// renews it on every page load, so a visitor keeps their identity as long
// as they come back within it.
const VisitorTokenTTL = 90 * 24 * time.Hour

// acceptedImages maps the sniffed content types the desk takes.
var acceptedImages = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true}

// deskRoutes adds the desk's routes to mux.
func deskRoutes(mux *http.ServeMux, static fs.FS, cfg Config) {
	dc := cfg.Desk
	if dc.MaxImageBytes <= 0 {
		dc.MaxImageBytes = DefaultMaxImageBytes
	}
	log := dc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux.HandleFunc("/desk/visitor", func(w http.ResponseWriter, r *http.Request) {
		if !cors(w, r, dc.Origins, "POST") || !dc.allow(w, r, dc.VisitorTokens) {
			return
		}
		serveVisitorToken(w, r, dc, cfg.WebSocketURL)
	})
	mux.HandleFunc("/desk/images", func(w http.ResponseWriter, r *http.Request) {
		if !cors(w, r, dc.Origins, "POST") || !dc.allow(w, r, dc.Uploads) {
			return
		}
		serveUpload(w, r, dc, log)
	})
	mux.HandleFunc("GET /desk/images/{id}", func(w http.ResponseWriter, r *http.Request) {
		serveImage(w, r, dc.Images, false)
	})
	mux.HandleFunc("GET /desk/images/{id}/thumb", func(w http.ResponseWriter, r *http.Request) {
		serveImage(w, r, dc.Images, true)
	})
	if dc.Agents != nil {
		mux.HandleFunc("GET /desk/demo-agents", func(w http.ResponseWriter, r *http.Request) {
			serveDemoAgents(w, r, dc.Agents)
		})
	}
	mux.HandleFunc("GET /agent", func(w http.ResponseWriter, r *http.Request) {
		serveHTML(w, static, "agent.html", consoleCSP, map[string]any{
			"wsUrl": cfg.WebSocketURL, "demoTokens": cfg.DemoTokens != nil, "demoAgents": dc.Agents != nil,
			"maxImageBytes": dc.MaxImageBytes,
		})
	})
}

// originAllowed reports whether a browser origin may use the desk's
// cross-origin endpoints: the server's own host, or one of patterns.
func originAllowed(r *http.Request, origin string, patterns []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	host := strings.ToLower(u.Host)
	if strings.EqualFold(host, r.Host) {
		return true
	}
	for _, p := range patterns {
		if ok, err := path.Match(strings.ToLower(p), host); err == nil && ok {
			return true
		}
	}
	return false
}

// cors answers the CORS side of a cross-origin endpoint: requests from an
// origin that is not allowed get 403, preflights are answered here (false:
// nothing more to do), other methods than method get 405.
func cors(w http.ResponseWriter, r *http.Request, patterns []string, method string) bool {
	w.Header().Add("Vary", "Origin")
	if origin := r.Header.Get("Origin"); origin != "" {
		if !originAllowed(r, origin, patterns) {
			http.Error(w, "this site may not use the chat widget (the server's -desk-origins)", http.StatusForbidden)
			return false
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", method)
		w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	if r.Method != method {
		w.Header().Set("Allow", method+", OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
	return true
}

// allow counts a request against limit for its client address; one over
// the limit gets 429 and false.
func (dc *DeskConfig) allow(w http.ResponseWriter, r *http.Request, limit *clientip.Limiter) bool {
	if limit.Allow(clientip.FromRequest(r, dc.TrustedProxies).Addr()) {
		return true
	}
	w.Header().Set("Retry-After", "60")
	deskError(w, http.StatusTooManyRequests, "rate_limited", "too many requests from your address; try again in a minute")
	return false
}

// newVisitorUID makes up a visitor uid: "v_" and 24 hex digits.
func newVisitorUID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return store.AnonymousVisitorPrefix + hex.EncodeToString(b[:])
}

// serveVisitorToken answers POST /desk/visitor, body {"token":"<the
// visitor's current token>"} (optional): a fresh token for the same
// visitor if the old one is valid and a visitor's, else for a new visitor.
// → {"uid":"v_...","token":"...","expires_in":7776000,"ws_url":"..."}
func serveVisitorToken(w http.ResponseWriter, r *http.Request, dc *DeskConfig, wsURL string) {
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, `the body must be {"token":"..."} or empty`, http.StatusBadRequest)
		return
	}
	uid := ""
	if body.Token != "" {
		if old, err := dc.VerifyToken(body.Token); err == nil && store.IsAnonymousVisitor(old) {
			uid = old
		}
	}
	if uid == "" {
		uid = newVisitorUID()
	}
	token, err := dc.SignToken(uid, VisitorTokenTTL)
	if err != nil {
		http.Error(w, "could not sign a token", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"uid": uid, "token": token,
		"expires_in": int64(VisitorTokenTTL / time.Second), "ws_url": wsURL})
}

// serveDemoAgents lists the agents for the console's demo login.
func serveDemoAgents(w http.ResponseWriter, r *http.Request, agents func(context.Context) ([]store.AgentStatus, error)) {
	list, err := agents(r.Context())
	if err != nil {
		http.Error(w, "agents unavailable", http.StatusServiceUnavailable)
		return
	}
	type agent struct {
		UID      string `json:"uid"`
		Nickname string `json:"nickname"`
		Avatar   string `json:"avatar"`
		Presence string `json:"presence"`
	}
	out := make([]agent, len(list))
	for i, a := range list {
		out[i] = agent{UID: a.UID, Nickname: a.Nickname, Avatar: a.AvatarURL, Presence: string(a.Presence)}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"agents": out})
}

// deskError refuses an upload or a visitor token with an HTTP status and
// a code the UIs translate.
func deskError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "message": message})
}

// serveUpload answers POST /desk/images: the body is the image itself
// (PNG, JPEG or GIF, at most MaxImageBytes), the uploader's bind token in
// "Authorization: Bearer <token>". The type is taken from the bytes, not
// from the request, and the image must decode. → {"id","url","thumb",
// "width","height"}; the uploader then sends a desk.say with "image":id.
func serveUpload(w http.ResponseWriter, r *http.Request, dc *DeskConfig, log *slog.Logger) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		deskError(w, http.StatusUnauthorized, "token_required", "send your bind token as Authorization: Bearer <token>")
		return
	}
	owner, err := dc.VerifyToken(strings.TrimSpace(token))
	if err != nil {
		deskError(w, http.StatusUnauthorized, "token_invalid", "the bind token is not valid")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, dc.MaxImageBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		deskError(w, http.StatusRequestEntityTooLarge, "image_too_large", fmt.Sprintf("images may be at most %d bytes", dc.MaxImageBytes))
		return
	case err != nil:
		deskError(w, http.StatusBadRequest, "upload_failed", "the upload was cut short")
		return
	case len(data) == 0:
		deskError(w, http.StatusBadRequest, "image_empty", "the body is empty; send the image as the body")
		return
	}
	contentType := http.DetectContentType(data)
	if !acceptedImages[contentType] {
		deskError(w, http.StatusUnsupportedMediaType, "image_type", "only PNG, JPEG and GIF images are accepted")
		return
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		deskError(w, http.StatusUnsupportedMediaType, "image_invalid", "the image cannot be decoded")
		return
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > maxImageSide || cfg.Height > maxImageSide || cfg.Width*cfg.Height > maxImagePixels {
		deskError(w, http.StatusRequestEntityTooLarge, "image_dimensions", fmt.Sprintf("images may be at most %d pixels a side and %d pixels in all", maxImageSide, maxImagePixels))
		return
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		deskError(w, http.StatusUnsupportedMediaType, "image_invalid", "the image cannot be decoded")
		return
	}
	thumb, thumbType, err := thumbnail(img, contentType)
	if err != nil {
		log.Warn("desk: make thumbnail", "err", err)
		deskError(w, http.StatusInternalServerError, "upload_failed", "the image could not be stored")
		return
	}
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	err = dc.Images.SaveImage(r.Context(), store.Image{ID: id, Owner: owner, ContentType: contentType, Data: data,
		ThumbType: thumbType, Thumb: thumb, Width: cfg.Width, Height: cfg.Height, CreatedAt: time.Now()})
	if err != nil {
		log.Warn("desk: store image", "owner", owner, "err", err)
		deskError(w, http.StatusServiceUnavailable, "upload_failed", "the image could not be stored; try again")
		return
	}
	url := "/desk/images/" + id
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "url": url, "thumb": url + "/thumb", "width": cfg.Width, "height": cfg.Height})
}

// thumbnail scales img down to fit thumbSide (never up) with a bilinear
// kernel and encodes it: JPEG for photos, PNG otherwise (keeping
// transparency).
func thumbnail(img image.Image, contentType string) ([]byte, string, error) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	tw, th := w, h
	if w > thumbSide || h > thumbSide {
		if w >= h {
			tw, th = thumbSide, max(1, h*thumbSide/w)
		} else {
			tw, th = max(1, w*thumbSide/h), thumbSide
		}
	}
	out := image.NewNRGBA(image.Rect(0, 0, tw, th))
	draw.BiLinear.Scale(out, out.Bounds(), img, b, draw.Src, nil)
	var buf bytes.Buffer
	if contentType == "image/jpeg" {
		if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: 80}); err != nil {
			return nil, "", err
		}
		return buf.Bytes(), "image/jpeg", nil
	}
	if err := png.Encode(&buf, out); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "image/png", nil
}

// serveImage serves a stored image or its thumbnail. The id is random and
// unguessable: whoever has the URL (the conversation's parties) sees it.
func serveImage(w http.ResponseWriter, r *http.Request, images store.ImageStore, thumb bool) {
	img, err := images.Image(r.Context(), r.PathValue("id"), thumb)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		http.NotFound(w, r)
		return
	case err != nil:
		http.Error(w, "image unavailable", http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	h.Set("Content-Type", img.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'")
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	http.ServeContent(w, r, "", img.CreatedAt, bytes.NewReader(img.Data))
}
