// Package directory maps uids to the connections (client_ids) bound to them,
// and groups to the connections that joined them, across the whole cluster.
//
// A gateway writes the entries and group memberships of the connections it
// holds (Bind, Unbind, JoinGroup, LeaveGroup) and nobody else does; the
// register purges a dead gateway's entries and memberships (PurgeGateway);
// workers read (ClientIDs, UID, UIDs, GroupMembers). Readers must not trust
// entries of gateways that are no longer live: wrap a Directory with Live to
// filter them out, with Coalesce to share the lookups of concurrent callers
// (one Redis pipeline instead of one per message), and with a Cache, kept
// current by Redis.Watch, to answer repeated lookups from memory. Two
// implementations share one contract test suite: Memory (one process, the
// all-in-one) and Redis (production; every hot-path command touches a
// single key, so it works on Redis Cluster).
package directory

import (
	"context"
	"errors"
)

// ErrInvalid reports a malformed client_id, an empty uid or an empty group.
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
	// PurgeGateway removes every entry and every group membership of the
	// connections of gateway gatewayID and returns the entries as
	// client_id → uid.
	PurgeGateway(ctx context.Context, gatewayID string) (map[string]string, error)
	// GatewayEntries returns the entries of gateway gatewayID as
	// client_id → uid.
	GatewayEntries(ctx context.Context, gatewayID string) (map[string]string, error)

	// JoinGroup records that clientID is a member of group (idempotent). A
	// group is any non-empty string, "0" included; a connection may be a
	// member of many groups.
	JoinGroup(ctx context.Context, clientID, group string) error
	// LeaveGroup removes that membership; a missing one is not an error.
	LeaveGroup(ctx context.Context, clientID, group string) error
	// GroupMembers returns, for each group that has members, its client_ids
	// in no particular order. Groups without members are absent.
	GroupMembers(ctx context.Context, groups ...string) (map[string][]string, error)
	// UIDs returns the uid of each bound client_id among clientIDs; unbound
	// ones are absent.
	UIDs(ctx context.Context, clientIDs ...string) (map[string]string, error)
}
