package bindtoken_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gatewire/gatewire/internal/bindtoken"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	v, err := bindtoken.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	good, err := bindtoken.Sign(secret, "85", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if uid, err := v.Verify(good); err != nil || uid != "85" {
		t.Fatalf("Verify(signed token) = %q, %v; want 85", uid, err)
	}
	future := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", bindtoken.ErrMissing},
		{"garbage", "not.a.jwt", bindtoken.ErrInvalid},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "85", "exp": time.Now().Add(-time.Hour).Unix()}), bindtoken.ErrExpired},
		{"no exp", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "85"}), bindtoken.ErrInvalid},
		{"no sub", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": future}), bindtoken.ErrInvalid},
		{"other secret", sign(t, jwt.SigningMethodHS256, []byte("another secret, 32 bytes long!!!"), jwt.MapClaims{"sub": "85", "exp": future}), bindtoken.ErrInvalid},
		{"HS512", sign(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "85", "exp": future}), bindtoken.ErrInvalid},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "85", "exp": future}), bindtoken.ErrInvalid},
		{"tampered", good[:strings.LastIndex(good, ".")] + ".AAAA", bindtoken.ErrInvalid},
	}
	for _, c := range cases {
		if uid, err := v.Verify(c.token); !errors.Is(err, c.want) || uid != "" {
			t.Errorf("%s: Verify = %q, %v; want error %v", c.name, uid, err, c.want)
		}
	}
}

func TestShortSecretRefused(t *testing.T) {
	if _, err := bindtoken.NewVerifier([]byte("short")); err == nil {
		t.Fatal("NewVerifier accepted a 5-byte secret")
	}
}
