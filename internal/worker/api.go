package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Errors returned by API calls; test with errors.Is.
var (
	// ErrInvalidArgument reports a malformed client_id, an empty uid or
	// similar bad input.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound reports that a client_id is not connected.
	ErrNotFound = errors.New("client not connected")
	// ErrConflict reports that a connection is bound to a different uid.
	ErrConflict = errors.New("connection bound to another uid")
	// ErrUnavailable reports that a gateway or the directory could not be
	// reached in time.
	ErrUnavailable = errors.New("unavailable")
)

// API is the business API shared by handlers and the Push API
// (GatewayWorker's Gateway:: calls). Every call but Post waits for a real
// answer from the gateways and the directory involved, bounded by ctx.
type API interface {
	// SendToClient sends one text (or binary) frame to one connection.
	// ErrNotFound when it is not connected.
	SendToClient(ctx context.Context, clientID string, data []byte, binary bool) error
	// SendToUID sends one frame to every connection of the given uids and
	// returns how many connections it reached (0 when none is online).
	SendToUID(ctx context.Context, uids []string, data []byte, binary bool) (int, error)
	// IsUIDOnline reports whether uid has at least one live connection.
	IsUIDOnline(ctx context.Context, uid string) (bool, error)
	// BindUID binds a connection to uid, replacing its previous uid if any.
	// Any non-empty uid is valid, "0" included.
	BindUID(ctx context.Context, clientID, uid string) error
	// UnbindUID removes the connection's binding to uid; ErrConflict when it
	// is bound to another uid. Unbinding a connection bound to nothing is a
	// no-op.
	UnbindUID(ctx context.Context, clientID, uid string) error
	// ClientIDsByUID lists the live connections bound to uid.
	ClientIDsByUID(ctx context.Context, uid string) ([]string, error)
	// UIDByClientID returns the uid the connection is bound to, "" if none.
	UIDByClientID(ctx context.Context, clientID string) (string, error)
	// CloseClient closes a connection, first sending data if not empty.
	CloseClient(ctx context.Context, clientID string, data []byte) error

	// SendToAll sends one frame to every connection — or, when clientIDs is
	// not empty, to those — except the excluded ones, and returns how many
	// it reached. Each gateway gets one command and fans out itself.
	SendToAll(ctx context.Context, data []byte, binary bool, clientIDs, exclude []string) (int, error)
	// Post hands one frame for the connections clientIDs to their gateways
	// and returns without waiting for them to write it, which saves each
	// gateway a result message: for frames whose fate changes nothing, like
	// a say's save, which a retry of the say gets again. The command may
	// wait on its link up to Config.PostLinger, to reach the gateway with
	// the next command that is answered. It fails when a client_id is
	// malformed or a gateway's link is down; a connection that closed
	// meanwhile just misses the frame.
	Post(ctx context.Context, clientIDs []string, data []byte, binary bool) error
	// SendToGroup sends one frame to every member of the groups except the
	// excluded connections (one command per gateway holding members).
	SendToGroup(ctx context.Context, groups []string, data []byte, binary bool, exclude []string) (int, error)
	// DestroyClient drops a connection at once, discarding queued frames.
	DestroyClient(ctx context.Context, clientID string) error
	// IsOnline reports whether a connection is open.
	IsOnline(ctx context.Context, clientID string) (bool, error)
	// UIDsOnline reports, for each uid, whether it has a live connection.
	UIDsOnline(ctx context.Context, uids []string) (map[string]bool, error)
	// ClientIDsByUIDs lists the live connections of each uid (uids without
	// any are absent).
	ClientIDsByUIDs(ctx context.Context, uids []string) (map[string][]string, error)
	// JoinGroup adds a connection to group (any non-empty name, "0"
	// included); LeaveGroup removes it. A closed connection leaves all its
	// groups.
	JoinGroup(ctx context.Context, clientID, group string) error
	LeaveGroup(ctx context.Context, clientID, group string) error
	// Ungroup removes every connection from group and returns how many.
	Ungroup(ctx context.Context, group string) (int, error)
	// GroupMembers returns the live members of each group that has any.
	GroupMembers(ctx context.Context, groups []string) (map[string]GroupMembers, error)
	// ClientCount counts the connections of the cluster (group "") or of a
	// group.
	ClientCount(ctx context.Context, group string) (int, error)
	// Clients lists the connections of the cluster (group "") or of a group
	// with their uid, groups and session.
	Clients(ctx context.Context, group string) ([]ClientInfo, error)
	// SetSession replaces a connection's session with a JSON object (nil or
	// "{}" clears it); UpdateSession merges a JSON merge patch (RFC 7396)
	// into it atomically at the gateway, so concurrent updates of different
	// fields never lose one another; GetSession reads it (nil when empty).
	SetSession(ctx context.Context, clientID string, session json.RawMessage) error
	UpdateSession(ctx context.Context, clientID string, patch json.RawMessage) error
	GetSession(ctx context.Context, clientID string) (json.RawMessage, error)
}

// GroupMembers are one group's live members.
type GroupMembers struct {
	ClientIDs []string
	// UIDs are the distinct uids bound on those connections.
	UIDs []string
}

// ClientInfo describes one connection.
type ClientInfo struct {
	ClientID string
	UID      string
	Groups   []string
	Session  json.RawMessage
}

// IncompleteError reports that some gateways did not answer a cluster-wide
// query in time; the result returned with it covers the others. It
// matches ErrUnavailable.
type IncompleteError struct {
	// Gateways are the ids of the gateways that did not answer.
	Gateways []string
}

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("incomplete result: %d gateway(s) did not answer in time: %v", len(e.Gateways), e.Gateways)
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *IncompleteError) Is(target error) bool { return target == ErrUnavailable }
