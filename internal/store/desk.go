package store

import (
	"context"
	"errors"
	"time"
)

// The customer-service desk's state: one conversation per visitor, served
// by at most one agent at a time; agents' presence; uploaded images; canned
// replies.
//
// Every call that changes who serves a conversation (Assign, AssignNext,
// Claim, Transfer, CloseConversation, SetPresence, ExpireAgents) runs in one
// transaction that is serialised with all the others (PostgreSQL: a
// transaction-scoped advisory lock; SQLite: BEGIN IMMEDIATE), and claims the
// conversation with a conditional UPDATE (... WHERE agent IS NULL): two
// workers can never assign one conversation twice, and an agent's cap of
// open conversations is never exceeded by assignment. Times are passed in
// by the caller (the desk's clock), so both backends and tests agree.

// DeskUID is the uid of "the desk" in stored messages: a visitor's message
// written while no agent serves the conversation is addressed to it, and
// system lines come from it. No user may be called "desk".
const DeskUID = "desk"

// ConversationState is where a desk conversation stands.
type ConversationState string

// Conversation states.
const (
	// ConversationNew: the visitor was seen but never wrote.
	ConversationNew ConversationState = "new"
	// ConversationQueued: the visitor wrote and waits for an agent.
	ConversationQueued ConversationState = "queued"
	// ConversationOpen: an agent serves it.
	ConversationOpen ConversationState = "open"
	// ConversationClosed: an agent closed it; the visitor's next message
	// assigns it again.
	ConversationClosed ConversationState = "closed"
)

// Presence is an agent's availability.
type Presence string

// Presences. Only online agents get conversations assigned; away agents
// keep theirs; going offline returns an agent's open conversations to the
// queue.
const (
	PresenceOnline  Presence = "online"
	PresenceAway    Presence = "away"
	PresenceOffline Presence = "offline"
)

// VisitorInfo is what the widget reports about its visitor.
type VisitorInfo struct {
	PageURL   string
	Referrer  string
	UserAgent string
	Email     string
}

// Conversation is one visitor's conversation with the desk.
type Conversation struct {
	Visitor string
	State   ConversationState
	// Agent serves the conversation; "" unless State is open.
	Agent string
	// LastAgent is the agent who served it last ("" if none ever did): a
	// returning visitor goes back to them when they can take it.
	LastAgent string
	// QueuedAt is when it joined the queue (zero unless queued).
	QueuedAt time.Time
	// AssignedAt is when the current or last agent got it.
	AssignedAt time.Time
	FirstSeen  time.Time
	LastSeen   time.Time
	// LastMsgID is the newest message's id (0 when none): the list of
	// conversations is ordered by it.
	LastMsgID int64
	Info      VisitorInfo
}

// ConversationSummary is a conversation as the agents' list shows it.
type ConversationSummary struct {
	Conversation
	// Last is the newest message (zero ID when none).
	Last Message
	// Unread counts the visitor's messages no agent has read.
	Unread int
}

// Assignment is the outcome of an assignment call.
type Assignment struct {
	Conversation Conversation
	// Assigned is true when this call gave the conversation to
	// Conversation.Agent; false when it was already open (Assign), or
	// when it stays queued (nobody online with room).
	Assigned bool
}

// ConversationFilter selects the agents' list.
type ConversationFilter struct {
	// Agent, when set, selects the conversations that agent serves.
	Agent string
	// State, when set, selects conversations in that state.
	State ConversationState
	// Visitor, when set, selects that visitor's conversation.
	Visitor string
	// Before pages back: conversations whose LastMsgID < Before.
	Before int64
	// Limit is how many (0: 50, at most 200).
	Limit int
}

// AgentStatus is an agent and their presence and load.
type AgentStatus struct {
	User
	Presence Presence
	// Open counts the conversations the agent serves.
	Open int
}

// PresenceChange is an agent ExpireAgents set offline.
type PresenceChange struct {
	Agent string
	// Released are the visitors whose conversations went back to the queue.
	Released []string
}

// Image is an uploaded image with its thumbnail.
type Image struct {
	// ID names the image (random, unguessable: its URL is its capability).
	ID          string
	Owner       string
	ContentType string
	Data        []byte
	ThumbType   string
	Thumb       []byte
	Width       int
	Height      int
	CreatedAt   time.Time
}

// CannedReply is a reply agents insert by typing /Shortcut.
type CannedReply struct {
	Shortcut string
	Body     string
}

// Desk errors; test with errors.Is.
var (
	// ErrNotFound reports a conversation, image or canned reply that does
	// not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict reports a conversation not in the state the call needs
	// (served by another agent, not served by the caller).
	ErrConflict = errors.New("store: conflict")
	// ErrUnavailable reports a transfer to an agent who is not online.
	ErrUnavailable = errors.New("store: agent not online")
)

// Limits of desk values.
const (
	// MaxImageBytes is the largest image a store accepts.
	MaxImageBytes = 16 << 20
	maxInfoBytes  = 2048
	maxCannedBody = 4096
	maxShortcut   = 64
)

// DeskStore is the customer-service desk's durable state.
type DeskStore interface {
	// TouchVisitor records a visit: it creates the visitor's conversation
	// (state new, FirstSeen now) or updates LastSeen and the non-empty
	// fields of info.
	TouchVisitor(ctx context.Context, visitor string, info VisitorInfo, now time.Time) (Conversation, error)
	// Conversation returns a visitor's conversation; ErrNotFound if none.
	Conversation(ctx context.Context, visitor string) (Conversation, error)
	// Assign gives the visitor's conversation (created if needed) to an
	// agent unless it is open already: the visitor's last agent if online
	// with fewer than maxOpen open conversations, else the online agent
	// with the fewest open conversations below maxOpen (ties: the one
	// assigned least recently). With none, the conversation is queued
	// (keeping its place if it already was). maxOpen <= 0 means no cap.
	Assign(ctx context.Context, visitor string, maxOpen int, now time.Time) (Assignment, error)
	// AssignNext assigns the oldest queued conversation as Assign would;
	// Assigned is false when the queue is empty or nobody online has room.
	AssignNext(ctx context.Context, maxOpen int, now time.Time) (Assignment, error)
	// Claim gives a conversation that is not open to agent (an agent
	// picking it from the queue; no cap). ErrConflict if another agent
	// serves it, ErrNotFound if there is none.
	Claim(ctx context.Context, visitor, agent string, now time.Time) (Assignment, error)
	// Transfer moves an open conversation from agent from to agent to,
	// who must be online (ErrUnavailable). ErrConflict unless from serves
	// it.
	Transfer(ctx context.Context, visitor, from, to string, now time.Time) (Conversation, error)
	// CloseConversation closes a conversation agent serves (ErrConflict
	// otherwise).
	CloseConversation(ctx context.Context, visitor, agent string, now time.Time) (Conversation, error)
	// NoteActivity records that message id belongs to the visitor's
	// conversation: LastMsgID becomes the larger of the two.
	NoteActivity(ctx context.Context, visitor string, msgID int64, now time.Time) error
	// MarkConversationRead marks the conversation's messages up to upTo as
	// read: the agents' and the desk's messages when byVisitor, else the
	// visitor's. It returns how many were newly marked.
	MarkConversationRead(ctx context.Context, visitor string, byVisitor bool, upTo int64, now time.Time) (int64, error)
	// Conversations lists conversations with at least one message, newest
	// activity first.
	Conversations(ctx context.Context, f ConversationFilter) ([]ConversationSummary, error)
	// ConversationHistory returns the messages of a visitor's conversation,
	// selected by p as History does, oldest first.
	ConversationHistory(ctx context.Context, visitor string, p Page) ([]Message, error)
	// QueuePosition returns a queued conversation's 1-based place in the
	// queue, 0 when it is not queued.
	QueuePosition(ctx context.Context, visitor string) (int, error)
	// SetPresence sets an agent's presence and clears their lost mark. It
	// reports whether the presence changed; going offline returns the
	// agent's open conversations to the queue and lists their visitors.
	SetPresence(ctx context.Context, agent string, p Presence, now time.Time) (changed bool, released []string, err error)
	// Agents lists the users with role agent, with presence and load.
	Agents(ctx context.Context) ([]AgentStatus, error)
	// AgentsConnected clears the lost mark of agents seen connected.
	AgentsConnected(ctx context.Context, agents []string) error
	// AgentsDisconnected marks agents (not offline) seen without any
	// connection as lost at now, unless already marked.
	AgentsDisconnected(ctx context.Context, agents []string, now time.Time) error
	// ExpireAgents sets offline every agent marked lost at or before
	// lostBefore, releasing their conversations as SetPresence does.
	ExpireAgents(ctx context.Context, lostBefore, now time.Time) ([]PresenceChange, error)
	// SaveImage stores an image; its ID must be new.
	SaveImage(ctx context.Context, img Image) error
	// Image returns an image (ErrNotFound if none); with thumb, Data is
	// the thumbnail and ContentType its type.
	Image(ctx context.Context, id string, thumb bool) (Image, error)
	// CannedReplies lists the canned replies by shortcut.
	CannedReplies(ctx context.Context) ([]CannedReply, error)
	// SaveCannedReply creates or replaces a canned reply.
	SaveCannedReply(ctx context.Context, r CannedReply, now time.Time) error
	// DeleteCannedReply removes one; ErrNotFound if it did not exist.
	DeleteCannedReply(ctx context.Context, shortcut string) error
}
