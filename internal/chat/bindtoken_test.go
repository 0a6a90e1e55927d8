package chat

import (
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gatewire/gatewire/internal/worker"
)

// token signs a bind token for uid with secret, expiring after ttl.
func token(t *testing.T, secret []byte, uid string, ttl time.Duration) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": uid, "exp": time.Now().Add(ttl).Unix()}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBindTokens: without -insecure-bind a bind needs a token signed for its
// frontId; every bad token gets its own error code and binds nothing.
func TestBindTokens(t *testing.T) {
	good := token(t, testSecret, "85", time.Minute)
	tests := []struct {
		name     string
		frame    string
		wantCode string // "" when the bind succeeds
	}{
		{"valid", `{"type":"bind","frontId":"85","token":"` + good + `"}`, ""},
		{"missing", `{"type":"bind","frontId":"85"}`, "token_required"},
		{"empty", `{"type":"bind","frontId":"85","token":""}`, "token_required"},
		{"not a string", `{"type":"bind","frontId":"85","token":123}`, "invalid_field"},
		{"garbage", `{"type":"bind","frontId":"85","token":"a.b.c"}`, "token_invalid"},
		{"expired", `{"type":"bind","frontId":"85","token":"` + token(t, testSecret, "85", -time.Hour) + `"}`, "token_expired"},
		{"other secret", `{"type":"bind","frontId":"85","token":"` + token(t, []byte("some-other-secret-0123456789abcdef"), "85", time.Minute) + `"}`, "token_invalid"},
		{"other uid", `{"type":"bind","frontId":"86","token":"` + good + `"}`, "token_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, false)
			c := x.api.connect("c1", "")
			x.send(c, tt.frame)
			var want []string
			if tt.wantCode == "" {
				x.wantFrames(t, "c1", `{"type":"bound","client_id":"c1","frontId":"85","unread":{}}`)
				want = []string{"c1=85"}
			} else {
				x.wantError(t, "c1", tt.wantCode, "bind")
			}
			if binds := x.api.bindsDone(); !slices.Equal(binds, want) {
				t.Errorf("binds %v, want %v", binds, want)
			}
		})
	}
}

// TestBindTokenInURL: a token in the WebSocket URL binds at connect; the
// seed's token-less bind for that uid then succeeds, for another uid not.
func TestBindTokenInURL(t *testing.T) {
	x := newHarness(t, false)
	c := x.api.connect("c1", "")
	x.h.OnWebSocketConnect(x.ctx, c, &worker.Request{Path: "/", Query: "a=1&token=" + token(t, testSecret, "85", time.Minute)})
	x.wantFrames(t, "c1", `{"type":"bound","client_id":"c1","frontId":"85","unread":{}}`)

	c = x.api.connect("c1", "85") // later events carry the bound uid
	x.send(c, `{"type":"bind","client_id":"c1","frontId":"85"}`)
	x.wantFrames(t, "c1", `{"type":"bound","client_id":"c1","frontId":"85","unread":{}}`)
	x.send(c, `{"type":"bind","client_id":"c1","frontId":"86"}`)
	x.wantError(t, "c1", "token_required", "bind")
	if binds := x.api.bindsDone(); !slices.Equal(binds, []string{"c1=85", "c1=85"}) {
		t.Errorf("binds %v, want c1=85 twice", binds)
	}

	bad := x.api.connect("c2", "")
	x.h.OnWebSocketConnect(x.ctx, bad, &worker.Request{Path: "/", Query: "token=" + token(t, testSecret, "85", -time.Hour)})
	x.wantError(t, "c2", "token_expired", "bind")
}

// TestVerifierRequired: a Handler without a verifier that also refuses
// token-less binds says so.
func TestVerifierRequired(t *testing.T) {
	x := newHarness(t, false)
	x.h.tokens = nil
	c := x.api.connect("c1", "")
	x.send(c, `{"type":"bind","frontId":"85","token":"x"}`)
	x.wantError(t, "c1", "token_required", "bind")
}
