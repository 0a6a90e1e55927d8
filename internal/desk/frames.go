package desk

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/gatewire/gatewire/internal/store"
)

// Request types (client to server). Every desk type starts with "desk.".
const (
	typeHello        = "desk.hello"
	typeSay          = "desk.say"
	typeHistory      = "desk.history"
	typeRead         = "desk.read"
	typeTyping       = "desk.typing"
	typeEmail        = "desk.email"
	typePresence     = "desk.presence"
	typeList         = "desk.list"
	typeClaim        = "desk.claim"
	typeTransfer     = "desk.transfer"
	typeClose        = "desk.close"
	typeAgents       = "desk.agents"
	typeCanned       = "desk.canned"
	typeCannedSave   = "desk.canned.save"
	typeCannedDelete = "desk.canned.delete"
)

// Frame types only the server sends.
const (
	typeWelcome      = "desk.welcome"
	typeMessage      = "desk.message"
	typeStatus       = "desk.status"
	typeReceipt      = "desk.receipt"
	typeConversation = "desk.conversation"
	typeAssigned     = "desk.assigned"
	typeError        = "error"
)

// Error codes. The chat's codes keep their meaning; the desk adds its own.
const (
	codeInvalidJSON      = "invalid_json"
	codeInvalidField     = "invalid_field"
	codeMissingField     = "missing_field"
	codeUnknownType      = "unknown_type"
	codeNotBound         = "not_bound"
	codeForbidden        = "forbidden"
	codeStoreFailed      = "store_failed"
	codeUnavailable      = "unavailable"
	codeNotAgent         = "not_agent"         // an agent's request from a visitor
	codeNotAssigned      = "not_assigned"      // the conversation is not the agent's
	codeNotFound         = "not_found"         // no such conversation, image or canned reply
	codeAgentUnavailable = "agent_unavailable" // transfer to an agent who is not online
)

// System line codes (KindSystem messages). Clients render them from their
// catalogs ("system.<code>") with the params.
const (
	sysAssigned    = "assigned"    // {agent, agent_name}
	sysTransferred = "transferred" // {from, from_name, to, to_name}
	sysClosed      = "closed"      // {agent, agent_name}
)

// request is a decoded desk request. Unknown fields are ignored; a field of
// the wrong JSON type makes the frame invalid.
type request struct {
	Type     string  `json:"type"`
	Visitor  string  `json:"visitor"`
	Data     *string `json:"data"`
	Image    string  `json:"image"`
	CMID     string  `json:"cmid"`
	Before   int64   `json:"before"`
	After    int64   `json:"after"`
	Limit    int     `json:"limit"`
	UpTo     int64   `json:"upTo"`
	Status   string  `json:"status"`
	Filter   string  `json:"filter"`
	To       string  `json:"to"`
	Page     string  `json:"page"`
	Referrer string  `json:"referrer"`
	UA       string  `json:"ua"`
	Email    string  `json:"email"`
	Shortcut string  `json:"shortcut"`
	Body     string  `json:"body"`
}

// profile is a person as clients show them.
type profile struct {
	UID      string `json:"uid"`
	Nickname string `json:"nickname"`
	Avatar   string `json:"avatar"`
	// Presence is set for agents.
	Presence string `json:"presence,omitempty"`
	// Open counts an agent's open conversations (agents' frames only).
	Open *int `json:"open,omitempty"`
}

// imageRef locates an image message's picture, relative to the server.
type imageRef struct {
	URL   string `json:"url"`
	Thumb string `json:"thumb"`
}

// systemLine is a system message's code and parameters.
type systemLine struct {
	Code   string            `json:"code"`
	Params map[string]string `json:"params"`
}

// messageFrame is one message of a desk conversation.
type messageFrame struct {
	Type    string `json:"type,omitempty"` // "desk.message" live, absent in history
	Visitor string `json:"visitor"`
	MsgID   int64  `json:"msg_id"`
	From    string `json:"from"`
	// Role is "visitor", "agent" or "system".
	Role string `json:"role"`
	// Name and Avatar describe an agent sender.
	Name   string      `json:"name,omitempty"`
	Avatar string      `json:"avatar,omitempty"`
	Kind   int         `json:"kind"`
	Text   string      `json:"text,omitempty"`
	Image  *imageRef   `json:"image,omitempty"`
	System *systemLine `json:"system,omitempty"`
	// TS is when it was stored, in Unix milliseconds.
	TS   int64  `json:"ts"`
	Read bool   `json:"read"`
	CMID string `json:"cmid,omitempty"`
}

// statusFrame tells a visitor where their conversation stands.
type statusFrame struct {
	Type string `json:"type"` // desk.status, or inside desk.welcome
	// State is the conversation's state: new, queued, open or closed.
	State string `json:"state"`
	// Agent serves the conversation (open only).
	Agent *profile `json:"agent"`
	// Position is the place in the queue (queued only; 1 is next).
	Position int `json:"position"`
	// Online counts the agents online.
	Online int `json:"online"`
	// Email is the email the visitor left, if any.
	Email string `json:"email"`
}

// infoFrame is what agents see of a visitor.
type infoFrame struct {
	Page      string `json:"page"`
	Referrer  string `json:"referrer"`
	UA        string `json:"ua"`
	Email     string `json:"email"`
	FirstSeen int64  `json:"first_seen"`
	LastSeen  int64  `json:"last_seen"`
}

// conversationFrame is a conversation as the agents' list shows it.
type conversationFrame struct {
	Type      string        `json:"type,omitempty"`
	Visitor   string        `json:"visitor"`
	State     string        `json:"state"`
	Agent     string        `json:"agent"`
	LastAgent string        `json:"last_agent"`
	QueuedAt  int64         `json:"queued_at"`
	Info      infoFrame     `json:"info"`
	Last      *messageFrame `json:"last"`
	Unread    int           `json:"unread"`
}

// errorFrame is the chat's error frame.
type errorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
	CMID    string `json:"cmid,omitempty"`
}

// frameError is a refused request.
type frameError struct {
	code, message, cmid string
	err                 error // logged, never sent
}

func (e *frameError) Error() string {
	if e.err != nil {
		return e.code + ": " + e.message + ": " + e.err.Error()
	}
	return e.code + ": " + e.message
}

func refuse(code, message string) *frameError { return &frameError{code: code, message: message} }

func failed(code, message string, err error) *frameError {
	return &frameError{code: code, message: message, err: err}
}

// maxPreviewRunes bounds the last-message preview of the agents' list.
const maxPreviewRunes = 80

// preview shortens a text for the list.
func preview(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(text) <= maxPreviewRunes {
		return text
	}
	r := []rune(text)
	return string(r[:maxPreviewRunes]) + "…"
}

// imagePath is the URL path prefix of stored images.
const imagePath = "/desk/images/"

// ImageURL returns the URL path of an image and of its thumbnail.
func ImageURL(id string) (url, thumb string) {
	return imagePath + id, imagePath + id + "/thumb"
}

// decodeSystem parses a system line's text.
func decodeSystem(text string) *systemLine {
	var s systemLine
	if err := json.Unmarshal([]byte(text), &s); err != nil || s.Code == "" {
		return &systemLine{Code: "unknown", Params: map[string]string{}}
	}
	if s.Params == nil {
		s.Params = map[string]string{}
	}
	return &s
}

// roleOf names the role of a message's sender in the visitor's
// conversation.
func roleOf(m store.Message) string {
	switch m.From {
	case m.Conv:
		return "visitor"
	case store.DeskUID:
		return "system"
	default:
		return "agent"
	}
}
