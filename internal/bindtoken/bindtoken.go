// Package bindtoken signs and verifies the tokens that prove a client may
// bind a uid: HS256 JWTs whose "sub" is the uid and whose "exp" says until
// when. The application backend signs them with the secret it shares with
// the workers (-jwt-secret); a worker verifies them on bind.
package bindtoken

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinSecretLen is the shortest secret accepted: HS256 wants at least 256
// bits of key.
const MinSecretLen = 32

// Errors Verify reports; each wraps the library's cause.
var (
	// ErrMissing reports an empty token.
	ErrMissing = errors.New("bind token missing")
	// ErrExpired reports a token past its "exp".
	ErrExpired = errors.New("bind token expired")
	// ErrInvalid reports a token that is malformed, badly signed, signed
	// with another algorithm, or lacks "sub" or "exp".
	ErrInvalid = errors.New("bind token invalid")
)

// leeway tolerates clock skew between the signer and the worker.
const leeway = 30 * time.Second

// Verifier checks bind tokens against one secret.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for secret, which must be at least
// MinSecretLen bytes long.
func NewVerifier(secret []byte) (*Verifier, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("bind token secret is %d bytes; want at least %d", len(secret), MinSecretLen)
	}
	return &Verifier{
		secret: secret,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(leeway),
		),
	}, nil
}

// Verify returns the uid ("sub") of a valid token.
func (v *Verifier) Verify(token string) (string, error) {
	if token == "" {
		return "", ErrMissing
	}
	var claims jwt.RegisteredClaims
	_, err := v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.secret, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", fmt.Errorf("%w: %w", ErrExpired, err)
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	case claims.Subject == "":
		return "", fmt.Errorf("%w: no \"sub\" claim", ErrInvalid)
	}
	return claims.Subject, nil
}

// Sign returns a token for uid valid for ttl, signed with secret: what an
// application backend hands its logged-in user. Tests and the all-in-one's
// demo mode use it.
func Sign(secret []byte, uid string, ttl time.Duration) (string, error) {
	if uid == "" {
		return "", errors.New("bind token: empty uid")
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Subject:   uid,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
