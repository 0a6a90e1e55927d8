// Package directory maps uids to the connections (client_ids) bound to them,
// across the whole cluster.
//
// A gateway writes the entries of the connections it holds (Bind, Unbind) and
// nobody else does; the register purges a dead gateway's entries
// (PurgeGateway); workers read (ClientIDs, UID). Readers must not trust
// entries of gateways that are no longer live: wrap a Directory with Live to
// filter them out. Two implementations share one contract test suite: Memory
// (one process, the all-in-one) and Redis (production; every hot-path command
// touches a single key, so it works on Redis Cluster).
package directory

import (
	"context"
	"errors"
)

// ErrInvalid reports a malformed client_id or an empty uid.
var ErrInvalid = errors.New("directory: invalid argument")

// Directory is the uid ↔ client_id map. Implementations are safe for
// concurrent use.
type Directory interface {
	// Bind records that clientID is bound to uid. A connection has at most one
	// uid: the gateway calls Unbind for the old uid before binding a new one.
	// A uid may be bound to many connections.
	Bind(ctx context.Context, clientID, uid string) error
	// Unbind removes the entry Bind made. Removing a missing entry is not an
	// error.
	Unbind(ctx context.Context, clientID, uid string) error
	// ClientIDs returns, for each uid that has at least one entry, its
	// client_ids in no particular order. Uids without entries are absent.
	ClientIDs(ctx context.Context, uids ...string) (map[string][]string, error)
	// UID returns the uid clientID is bound to, or "" when it is not bound.
	UID(ctx context.Context, clientID string) (string, error)
	// PurgeGateway removes every entry of the connections of gateway
	// gatewayID and returns them as client_id → uid.
	PurgeGateway(ctx context.Context, gatewayID string) (map[string]string, error)
	// GatewayEntries returns the entries of gateway gatewayID as
	// client_id → uid.
	GatewayEntries(ctx context.Context, gatewayID string) (map[string]string, error)
}
