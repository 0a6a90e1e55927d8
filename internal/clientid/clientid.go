// Package clientid makes and parses client_ids: opaque 32-character strings
// that name one connection and the gateway holding it.
//
// A client_id is the hex encoding of the gateway's 8-byte id followed by an
// 8-byte per-gateway sequence number. Gateway ids are random per process
// start, so a client_id is never issued twice, not even after a restart.
// Start with NewGatewayID and Make; callers that only route use GatewayOf.
package clientid

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Len is the length of every valid client_id.
const Len = 32

// gatewayIDLen is the length of a gateway id in hex characters.
const gatewayIDLen = 16

// ErrInvalid reports a string that is not a client_id.
var ErrInvalid = errors.New("invalid client_id")

// NewGatewayID returns a fresh random gateway id (16 hex characters).
func NewGatewayID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// ValidGatewayID reports whether id has the form NewGatewayID returns.
func ValidGatewayID(id string) bool {
	if len(id) != gatewayIDLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// Make returns the client_id of connection number seq on gateway gatewayID.
func Make(gatewayID string, seq uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return gatewayID + hex.EncodeToString(b[:])
}

// GatewayOf returns the id of the gateway that holds clientID.
func GatewayOf(clientID string) (string, error) {
	if len(clientID) != Len {
		return "", fmt.Errorf("%w: %q has length %d, want %d", ErrInvalid, clientID, len(clientID), Len)
	}
	if _, err := hex.DecodeString(clientID); err != nil {
		return "", fmt.Errorf("%w: %q is not hex", ErrInvalid, clientID)
	}
	return clientID[:gatewayIDLen], nil
}
