package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Request types a client may send.
const (
	typeBind    = "bind"
	typeSay     = "say"
	typeHistory = "history"
	typeRead    = "read"
	typeProfile = "profile"
)

// Frame types the server sends.
const (
	typeInit    = "init"
	typeBound   = "bound"
	typeText    = "text"
	typeSave    = "save"
	typeError   = "error"
	typeReceipt = "receipt"
)

// Field names of client requests, exactly as the seed's clients spell them.
const (
	fieldType     = "type"
	fieldClientID = "client_id"
	fieldFrontID  = "frontId"
	fieldToID     = "toId"
	fieldData     = "data"
	fieldCMID     = "cmid"
	fieldLimit    = "limit"
	fieldBefore   = "before"
	fieldAfter    = "after"
	fieldUpTo     = "upTo"
	fieldToken    = "token"
)

// Limits of client requests.
const (
	// maxCMIDBytes is the longest client message id accepted.
	maxCMIDBytes = 64
	// defaultHistory is how many messages a history request returns by
	// default: the seed's "last 10 messages".
	defaultHistory = 10
	// maxHistory is the most one history request returns.
	maxHistory = 50
)

// initFrame greets a new connection with its client_id.
type initFrame struct {
	Type     string `json:"type"` // always "init"
	ClientID string `json:"client_id"`
}

// boundFrame acknowledges a bind; the seed's clients ignore it.
type boundFrame struct {
	Type     string `json:"type"` // always "bound"
	ClientID string `json:"client_id"`
	FrontID  string `json:"frontId"`
	// Unread counts the unread messages to the uid per sender.
	Unread map[string]int `json:"unread"`
}

// textFrame is a chat message: "text" to the recipient's connections, "save"
// (with IsRead set) to the sender's.
type textFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id"` // the sender's client_id
	FrontID string `json:"frontId"`
	ToID    string `json:"toId"`
	Date    string `json:"date"`
	Data    string `json:"data"` // nl2br(htmlspecialchars(raw))
	Raw     string `json:"raw"`
	// MsgID is the stored message's id.
	MsgID int64 `json:"msg_id"`
	// IsRead is 1 when the message reached at least one connection of the
	// recipient, else 0; nil (absent) in "text" frames.
	IsRead *int `json:"is_read,omitempty"`
	// CMID echoes the sender's client message id in "save" frames.
	CMID string `json:"cmid,omitempty"`
}

// historyItem is one message of a history reply.
type historyItem struct {
	MsgID   int64  `json:"msg_id"`
	FrontID string `json:"frontId"`
	ToID    string `json:"toId"`
	Date    string `json:"date"`
	Data    string `json:"data"`
	Raw     string `json:"raw"`
	Kind    int    `json:"kind"`
	// IsRead is 1 once the recipient marked the message read.
	IsRead int `json:"is_read"`
}

// historyFrame answers a history request.
type historyFrame struct {
	Type     string        `json:"type"` // always "history"
	ToID     string        `json:"toId"`
	Messages []historyItem `json:"messages"` // oldest first
	// More is true when further messages exist beyond this page in the
	// direction asked (older for before, newer for after).
	More bool `json:"more"`
}

// receiptFrame tells both parties that FrontID read ToID's messages up to
// UpTo.
type receiptFrame struct {
	Type    string `json:"type"` // always "receipt"
	FrontID string `json:"frontId"`
	ToID    string `json:"toId"`
	UpTo    int64  `json:"upTo"`
}

// profile is one user's public profile.
type profile struct {
	UID      string `json:"uid"`
	Nickname string `json:"nickname"`
	Avatar   string `json:"avatar"`
	Role     string `json:"role"`
}

// profileFrame answers a profile request (the seed's get/head and get/name).
type profileFrame struct {
	Type string  `json:"type"` // always "profile"
	Self profile `json:"self"`
	Peer profile `json:"peer"`
}

// request is a decoded client frame: a JSON object whose fields are kept raw
// so that each can be checked for its own type. Keys are matched exactly
// (PHP arrays are case-sensitive); of duplicate keys the last one wins, as in
// PHP's json_decode.
type request struct {
	typ    string
	fields map[string]json.RawMessage
}

// bindRequest is a decoded "bind" request.
type bindRequest struct {
	clientID    string
	hasClientID bool
	frontID     string
	token       string
}

// sayRequest is a decoded "say" request.
type sayRequest struct {
	frontID string
	toID    string
	data    string
	cmid    string
}

// parseRequest decodes a text frame into a request with a non-empty type.
// A frame that is not valid UTF-8 is not JSON (RFC 8259 §8.1, and PHP's
// json_decode refuses it): json.Unmarshal would turn its invalid bytes into
// U+FFFD and bind, or store, what the client never sent.
func parseRequest(data []byte) (request, *frameError) {
	if !utf8.Valid(data) {
		return request{}, newFrameError(codeInvalidJSON, "the frame is not a JSON object: it is not valid UTF-8")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		// fields is nil without an error for the JSON literal null.
		return request{}, newFrameError(codeInvalidJSON, "the frame is not a JSON object")
	}
	req := request{fields: fields}
	raw, ok := req.field(fieldType)
	if !ok || isNull(raw) {
		return req, newFrameError(codeMissingType, `field "type" is required`)
	}
	var typ string
	if err := json.Unmarshal(raw, &typ); err != nil {
		return req, errInvalidField(fieldType, "a string")
	}
	if typ == "" {
		return req, newFrameError(codeMissingType, `field "type" is required`)
	}
	req.typ = typ
	return req, nil
}

// decodeBind checks the fields of a "bind" request.
func decodeBind(req request) (bindRequest, *frameError) {
	var b bindRequest
	if raw, ok := req.field(fieldClientID); ok {
		if err := json.Unmarshal(raw, &b.clientID); err != nil || isNull(raw) {
			return b, errInvalidField(fieldClientID, "a string")
		}
		b.hasClientID = true
	}
	var ferr *frameError
	if b.frontID, ferr = req.uid(fieldFrontID); ferr != nil {
		return b, ferr
	}
	if raw, ok := req.field(fieldToken); ok {
		if err := json.Unmarshal(raw, &b.token); err != nil || isNull(raw) {
			return b, errInvalidField(fieldToken, "a string")
		}
	}
	return b, nil
}

// decodeSay checks the fields of a "say" request.
func decodeSay(req request) (sayRequest, *frameError) {
	var s sayRequest
	var ferr *frameError
	if s.frontID, ferr = req.uid(fieldFrontID); ferr != nil {
		return s, ferr
	}
	if s.toID, ferr = req.uid(fieldToID); ferr != nil {
		return s, ferr
	}
	raw, ok := req.field(fieldData)
	if !ok {
		return s, errMissingField(fieldData)
	}
	if err := json.Unmarshal(raw, &s.data); err != nil || isNull(raw) {
		return s, errInvalidField(fieldData, "a string")
	}
	if raw, ok := req.field(fieldCMID); ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &s.cmid); err != nil || len(s.cmid) > maxCMIDBytes {
			return s, errInvalidField(fieldCMID, fmt.Sprintf("a string of at most %d bytes", maxCMIDBytes))
		}
	}
	return s, nil
}

// int decodes an optional non-negative integer field; absent or null is 0.
func (r request) int(name string) (int64, *frameError) {
	raw, ok := r.field(name)
	if !ok || isNull(raw) {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 0 {
		return 0, errInvalidField(name, "a non-negative integer")
	}
	return n, nil
}

// field returns the raw value of a field, without surrounding white space.
func (r request) field(name string) (json.RawMessage, bool) {
	raw, ok := r.fields[name]
	if !ok {
		return nil, false
	}
	return bytes.TrimSpace(raw), true
}

// uid decodes a uid field. The seed's PHP clients send uids as JSON strings
// or integers; an integer becomes its decimal string. A missing field or an
// empty string is a missing_field error; any other JSON type (null included),
// a fraction, an exponent or an integer beyond int64 is an invalid_field
// error.
func (r request) uid(name string) (string, *frameError) {
	raw, ok := r.field(name)
	if !ok {
		return "", errMissingField(name)
	}
	uid, ok := parseUID(raw)
	if !ok {
		return "", errInvalidField(name, "a string or an integer")
	}
	if uid == "" {
		return "", errMissingField(name)
	}
	return uid, nil
}

// parseUID decodes raw as a JSON string or a JSON integer.
func parseUID(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	case c == '-' || ('0' <= c && c <= '9'):
		if bytes.ContainsAny(raw, ".eE") || !json.Valid(raw) {
			return "", false
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return "", false
		}
		return strconv.FormatInt(n, 10), true
	default:
		return "", false
	}
}

// isNull reports whether raw is the JSON literal null, which json.Unmarshal
// accepts silently for strings.
func isNull(raw json.RawMessage) bool {
	return string(raw) == "null"
}

// EncodeFrame marshals a server frame: HTML characters and non-ASCII text are
// left unescaped (as PHP's JSON_UNESCAPED_UNICODE does), with no trailing
// newline. Extensions encode their frames with it too.
func EncodeFrame(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
