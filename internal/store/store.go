// Package store keeps users and messages: the chat's durable state.
//
// Store is one interface with two implementations that pass one contract
// test suite: Postgres (github.com/jackc/pgx/v5, pooled; production) and
// SQLite (modernc.org/sqlite, pure Go, one file; the all-in-one's default).
// Both apply their embedded schema migrations in Open, idempotently and
// safely when several processes start at once. Messages hold raw text, never
// HTML. Implementations are safe for concurrent use.
//
// Start with Open, which picks the backend from a database URL, and the
// Store interface. A conversation is the unordered pair of its two uids:
// History returns only messages between those two, in both directions.
package store

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Role is what a user is in the customer-service chat.
type Role string

// Roles.
const (
	RoleVisitor Role = "visitor"
	RoleAgent   Role = "agent"
)

// AnonymousVisitorPrefix starts every uid the desk makes up for a visitor
// of the widget (POST /desk/visitor hands such tokens to anyone). These
// uids talk only to the desk (desk.* requests), never to a uid directly.
const AnonymousVisitorPrefix = "v_"

// IsAnonymousVisitor reports whether uid is one the desk made up for a
// widget visitor.
func IsAnonymousVisitor(uid string) bool {
	return len(uid) > len(AnonymousVisitorPrefix) && strings.HasPrefix(uid, AnonymousVisitorPrefix)
}

// Kind is a message's content type (the seed's `type` column: 1 text,
// 2 image; 3 is the desk's system lines).
type Kind int

// Kinds.
const (
	KindText  Kind = 1
	KindImage Kind = 2
	// KindSystem is a line the desk writes into a conversation (an
	// assignment, a transfer): From is DeskUID, Conv is set, and Text is
	// {"code":"...","params":{...}}, which clients render in their own
	// language.
	KindSystem Kind = 3
)

// User is a chat participant.
type User struct {
	UID       string
	Nickname  string
	AvatarURL string
	Role      Role
}

// NewMessage is a message to store.
type NewMessage struct {
	From string
	To   string
	// Text is the raw text (never HTML); for images, the image URL.
	Text string
	Kind Kind
	// CMID is the sender's client message id; "" means none. A second
	// message with the same (From, CMID) is not stored again: the first one
	// is returned instead.
	CMID string
	// Conv is the visitor uid of the desk conversation the message belongs
	// to ("" for plain chat); it must be From or To.
	Conv string
}

// Message is a stored message.
type Message struct {
	// ID is assigned by the store, increasing in insertion order.
	ID   int64
	From string
	To   string
	Text string
	Kind Kind
	CMID string
	// Conv is the desk conversation ("" for plain chat).
	Conv string
	// CreatedAt is when it was stored (microsecond precision, UTC).
	CreatedAt time.Time
	// Delivered is set once a delivery reached a connection of To, or
	// while a retry that claimed it is delivering it. A new message is
	// stored without it: the say that stored it delivers it and then sets
	// it (MarkDelivered). A retry of the same cmid delivers only a message
	// it can claim (ClaimDelivery), so one whose first say died before
	// delivering (a worker killed between the commit and the delivery) is
	// still delivered, and one already delivered is not delivered again.
	Delivered bool
	// ReadAt is when To marked it read; zero when unread.
	ReadAt time.Time
}

// Saved is the outcome of storing one NewMessage.
type Saved struct {
	Message Message
	// Duplicate is true when (From, CMID) was already stored: Message is the
	// earlier message and nothing new was written.
	Duplicate bool
}

// Page selects messages of one conversation by id. Zero fields mean "no
// bound"; Limit zero means 10, and is capped at 100. Negative fields are
// invalid.
type Page struct {
	// Before returns messages with id < Before (older pages).
	Before int64
	// After returns messages with id > After (catch-up after a reconnect),
	// the oldest first. With Before also set, both bounds apply.
	After int64
	Limit int
}

// ErrInvalid reports bad input, found before the database is touched: empty
// uids, unknown kind or role, over-long text, negative page bounds, text
// that is not valid UTF-8 or holds a NUL byte, uids or cmids over 255 bytes.
var ErrInvalid = errors.New("store: invalid argument")

// MaxTextBytes is the longest message text a store accepts.
const MaxTextBytes = 16 << 10

// Store is the chat's durable state: messages and users, and the
// customer-service desk's conversations, presence, images and canned
// replies (DeskStore).
type Store interface {
	DeskStore

	// SaveMessages stores a batch in one round trip where the database
	// allows, returning one Saved per input, in input order. Either every
	// message is stored (or found as a duplicate) or an error is returned.
	SaveMessages(ctx context.Context, msgs []NewMessage) ([]Saved, error)
	// ClaimDelivery sets Delivered on message id if it was stored at least
	// minAge ago, by the store's clock, and reports whether this call set
	// it (false: it was delivered, a retry's delivery holds it, or it is
	// younger than minAge).
	ClaimDelivery(ctx context.Context, id int64, minAge time.Duration) (bool, error)
	// MarkDelivered sets Delivered on the messages ids, in one round trip:
	// they reached their recipient.
	MarkDelivered(ctx context.Context, ids []int64) error
	// ReleaseDelivery clears Delivered on an unread message id after a
	// delivery reached nobody, so that a later retry delivers it.
	ReleaseDelivery(ctx context.Context, id int64) error
	// History returns messages between a and b (both directions, nobody
	// else's), selected by p, ordered oldest first. With p.After set it
	// returns the oldest Limit messages after it; otherwise the newest Limit
	// messages before p.Before (or the newest overall).
	History(ctx context.Context, a, b string, p Page) ([]Message, error)
	// MarkRead marks the messages from peer to reader with id <= upTo as
	// read (and delivered) and returns how many were newly marked.
	MarkRead(ctx context.Context, reader, peer string, upTo int64) (int64, error)
	// UnreadCounts returns, per sender, how many messages to uid are unread.
	// Senders with none are absent.
	UnreadCounts(ctx context.Context, uid string) (map[string]int, error)
	// Users returns the users that exist among uids, keyed by uid.
	Users(ctx context.Context, uids ...string) (map[string]User, error)
	// UpsertUsers creates users or updates their nickname, avatar and role.
	// Role must be RoleVisitor or RoleAgent. Of several users with one UID,
	// the last wins.
	UpsertUsers(ctx context.Context, users []User) error
	// Close releases the store's connections.
	Close() error
}
