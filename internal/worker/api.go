package worker

import (
	"context"
	"errors"
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
// (GatewayWorker's Gateway:: calls). Every call waits for a real answer from
// the gateways and the directory involved, bounded by ctx.
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
}
