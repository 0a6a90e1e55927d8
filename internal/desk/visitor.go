package desk

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// visitorRequest handles a request of a connection bound to a visitor.
func (d *Desk) visitorRequest(ctx context.Context, c *worker.Client, req request) *frameError {
	switch req.Type {
	case typeHello:
		return d.visitorHello(ctx, c, req)
	case typeSay:
		return d.visitorSay(ctx, c, req)
	case typeHistory:
		return d.history(ctx, c, c.UID, req)
	case typeRead:
		return d.read(ctx, c.UID, true, req.UpTo)
	case typeTyping:
		return d.visitorTyping(ctx, c)
	case typeEmail:
		return d.visitorEmail(ctx, c, req)
	case typePresence, typeList, typeClaim, typeTransfer, typeClose, typeAgents, typeCanned, typeCannedSave, typeCannedDelete:
		return refuse(codeNotAgent, "only agents may send "+req.Type)
	default:
		return refuse(codeUnknownType, fmt.Sprintf("unknown desk request %q", req.Type))
	}
}

// maxInfo bounds what a visitor reports about their page.
const maxInfo = 2048

// clip cuts s to at most n bytes of valid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// checkEmail validates an email address the visitor left ("" is none).
func checkEmail(email string) (string, *frameError) {
	email = strings.TrimSpace(email)
	if email == "" {
		return "", nil
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || len(email) > 254 {
		return "", refuse(codeInvalidField, `field "email" must be an email address`)
	}
	return email, nil
}

// visitorHello handles {"type":"desk.hello","page":"...","referrer":"...",
// "ua":"...","email":"..."}: the visit is recorded and the visitor gets a
// welcome with their conversation's status.
func (d *Desk) visitorHello(ctx context.Context, c *worker.Client, req request) *frameError {
	email, ferr := checkEmail(req.Email)
	if ferr != nil {
		return ferr
	}
	info := store.VisitorInfo{PageURL: clip(req.Page, maxInfo), Referrer: clip(req.Referrer, maxInfo), UserAgent: clip(req.UA, maxInfo), Email: email}
	callCtx, cancel := d.call(ctx)
	conv, err := d.store.TouchVisitor(callCtx, c.UID, info, d.now())
	cancel()
	if err != nil {
		return storeFailed("recording the visit", err)
	}
	st, err := d.status(ctx, conv)
	if err != nil {
		return storeFailed("loading the conversation", err)
	}
	st.Type = ""
	d.reply(ctx, c, welcomeFrame{Type: typeWelcome, Role: "visitor", UID: c.UID, Status: &st})
	return nil
}

// welcomeFrame answers desk.hello.
type welcomeFrame struct {
	Type string `json:"type"`
	Role string `json:"role"`
	UID  string `json:"uid"`
	// Status is the visitor's conversation (visitors only).
	Status *statusFrame `json:"status,omitempty"`
	// Self, Agents, MaxOpen and Canned are for agents only.
	Self    *profile      `json:"self,omitempty"`
	Agents  []profile     `json:"agents,omitempty"`
	MaxOpen int           `json:"max_open,omitempty"`
	Canned  []cannedReply `json:"canned,omitempty"`
}

type cannedReply struct {
	Shortcut string `json:"shortcut"`
	Body     string `json:"body"`
}

// decodeContent checks the data or image of a desk.say: the text, or the
// stored image the sender uploaded, as a message to store.
func (d *Desk) decodeContent(ctx context.Context, from string, req request) (store.Kind, string, *frameError) {
	if req.Image != "" {
		if req.Data != nil {
			return 0, "", refuse(codeInvalidField, `give "data" or "image", not both`)
		}
		callCtx, cancel := d.call(ctx)
		img, err := d.images.Image(callCtx, req.Image, true)
		cancel()
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && img.Owner != from):
			return 0, "", refuse(codeNotFound, "no such image of yours; upload it first")
		case err != nil:
			return 0, "", storeFailed("loading the image", err)
		}
		url, _ := ImageURL(req.Image)
		return store.KindImage, url, nil
	}
	if req.Data == nil {
		return 0, "", refuse(codeMissingField, `field "data" (or "image") is required`)
	}
	text := *req.Data
	if strings.TrimSpace(text) == "" {
		return 0, "", refuse(codeMissingField, `field "data" is empty`)
	}
	if len(text) > store.MaxTextBytes {
		return 0, "", refuse(codeInvalidField, fmt.Sprintf(`field "data" is longer than %d bytes`, store.MaxTextBytes))
	}
	return store.KindText, text, nil
}

// visitorSay handles {"type":"desk.say","data":"...","cmid":"..."} (or
// "image":"<id>" instead of "data"). The message is stored first; a
// conversation nobody serves is then assigned (or queued); the message goes
// to every connection of the visitor (their acknowledgement, with the
// cmid) and of the agent, and the agents' list is updated.
func (d *Desk) visitorSay(ctx context.Context, c *worker.Client, req request) *frameError {
	v := c.UID
	kind, text, ferr := d.decodeContent(ctx, v, req)
	if ferr != nil {
		ferr.cmid = req.CMID
		return ferr
	}
	if len(req.CMID) > 64 {
		return refuse(codeInvalidField, `field "cmid" must be at most 64 bytes`)
	}
	callCtx, cancel := d.call(ctx)
	conv, err := d.store.Conversation(callCtx, v)
	cancel()
	if errors.Is(err, store.ErrNotFound) {
		callCtx, cancel := d.call(ctx)
		conv, err = d.store.TouchVisitor(callCtx, v, store.VisitorInfo{}, d.now())
		cancel()
	}
	if err != nil {
		f := storeFailed("loading the conversation", err)
		f.cmid = req.CMID
		return f
	}
	to := store.DeskUID
	if conv.State == store.ConversationOpen {
		to = conv.Agent
	}
	callCtx, cancel = d.call(ctx)
	saved, err := d.saver.Save(callCtx, store.NewMessage{From: v, To: to, Conv: v, Kind: kind, Text: text, CMID: req.CMID})
	cancel()
	if err != nil {
		f := storeFailed("storing the message", err)
		f.cmid = req.CMID
		return f
	}
	m := saved.Message
	d.noteActivity(ctx, v, m.ID)
	msg := d.messageFrame(ctx, typeMessage, m)
	if conv.State != store.ConversationOpen {
		callCtx, cancel := d.call(ctx)
		a, err := d.store.Assign(callCtx, v, d.maxOpen, d.now())
		cancel()
		switch {
		case err != nil:
			// The message is stored and waits; the sweeper's drain or the
			// next message assigns it.
			d.log.WarnContext(ctx, "desk: assign", "visitor", v, "err", err)
		case a.Assigned:
			d.log.InfoContext(ctx, "desk: conversation assigned", "visitor", v, "agent", a.Conversation.Agent)
			d.toUIDs(ctx, msg, v, a.Conversation.Agent)
			d.assigned(ctx, a.Conversation, "new", "")
			return nil
		default:
			conv = a.Conversation
		}
	}
	if saved.Duplicate {
		d.toUIDs(ctx, msg, v) // the acknowledgement again; delivered already
		return nil
	}
	d.toUIDs(ctx, msg, v, conv.Agent)
	d.publishConversation(ctx, v)
	if conv.State != store.ConversationOpen {
		d.sendStatus(ctx, v)
	}
	return nil
}

// visitorTyping relays {"type":"desk.typing"} to the agent serving the
// conversation; nothing is stored.
func (d *Desk) visitorTyping(ctx context.Context, c *worker.Client) *frameError {
	if !d.typingAllowed(c.UID, c.UID) {
		return nil
	}
	callCtx, cancel := d.call(ctx)
	conv, err := d.store.Conversation(callCtx, c.UID)
	cancel()
	if err != nil || conv.State != store.ConversationOpen {
		return nil
	}
	d.toUIDs(ctx, typingFrame{Type: typeTyping, Visitor: c.UID, From: c.UID, Role: "visitor", ExpiresMS: typingExpires.Milliseconds()}, conv.Agent)
	return nil
}

// typingFrame is a typing indicator; it shows until expires_ms passed
// without another.
type typingFrame struct {
	Type      string `json:"type"`
	Visitor   string `json:"visitor"`
	From      string `json:"from"`
	Role      string `json:"role"`
	Name      string `json:"name,omitempty"`
	ExpiresMS int64  `json:"expires_ms"`
}

// typingAllowed throttles typing indicators: at most one per TypingGap per
// sender and conversation.
func (d *Desk) typingAllowed(from, visitor string) bool {
	now := d.now()
	k := typingKey{from, visitor}
	d.mu.Lock()
	defer d.mu.Unlock()
	if last, ok := d.typing[k]; ok && now.Sub(last) < d.typingGap {
		return false
	}
	if len(d.typing) > 100_000 {
		clear(d.typing)
	}
	d.typing[k] = now
	return true
}

// forgetTyping drops throttle entries older than the gap.
func (d *Desk) forgetTyping() {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, t := range d.typing {
		if now.Sub(t) >= d.typingGap {
			delete(d.typing, k)
		}
	}
}

// visitorEmail handles {"type":"desk.email","email":"..."}: the address
// agents may answer to.
func (d *Desk) visitorEmail(ctx context.Context, c *worker.Client, req request) *frameError {
	email, ferr := checkEmail(req.Email)
	if ferr != nil {
		return ferr
	}
	if email == "" {
		return refuse(codeMissingField, `field "email" is required`)
	}
	callCtx, cancel := d.call(ctx)
	conv, err := d.store.TouchVisitor(callCtx, c.UID, store.VisitorInfo{Email: email}, d.now())
	cancel()
	if err != nil {
		return storeFailed("saving the email", err)
	}
	st, err := d.status(ctx, conv)
	if err != nil {
		return storeFailed("loading the conversation", err)
	}
	d.toUIDs(ctx, st, c.UID)
	d.publishConversation(ctx, c.UID)
	return nil
}

// history answers a desk.history request about the visitor's conversation.
func (d *Desk) history(ctx context.Context, c *worker.Client, visitor string, req request) *frameError {
	limit := req.Limit
	switch {
	case limit < 0 || req.Before < 0 || req.After < 0:
		return refuse(codeInvalidField, `"limit", "before" and "after" must not be negative`)
	case limit == 0:
		limit = defaultHistory
	case limit > maxHistory:
		return refuse(codeInvalidField, fmt.Sprintf(`field "limit" must be at most %d`, maxHistory))
	}
	if req.Before != 0 && req.After != 0 {
		return refuse(codeInvalidField, `give "before" or "after", not both`)
	}
	callCtx, cancel := d.call(ctx)
	msgs, err := d.store.ConversationHistory(callCtx, visitor, store.Page{Before: req.Before, After: req.After, Limit: limit + 1})
	cancel()
	if err != nil {
		return storeFailed("loading history", err)
	}
	more := len(msgs) > limit
	if more {
		if req.After != 0 {
			msgs = msgs[:limit]
		} else {
			msgs = msgs[len(msgs)-limit:]
		}
	}
	f := historyFrame{Type: typeHistory, Visitor: visitor, Messages: make([]messageFrame, len(msgs)), More: more, After: req.After != 0}
	for i, m := range msgs {
		f.Messages[i] = d.messageFrame(ctx, "", m)
	}
	d.reply(ctx, c, f)
	return nil
}

// historyFrame answers desk.history, oldest first.
type historyFrame struct {
	Type     string         `json:"type"`
	Visitor  string         `json:"visitor"`
	Messages []messageFrame `json:"messages"`
	More     bool           `json:"more"`
	// After is true when the page answers "after" (catching up).
	After bool `json:"after"`
}

// read marks a conversation read by its visitor (byVisitor) or by the
// agents, and sends both sides a receipt when that marked anything.
func (d *Desk) read(ctx context.Context, visitor string, byVisitor bool, upTo int64) *frameError {
	if upTo <= 0 {
		return refuse(codeInvalidField, `field "upTo" must be a positive message id`)
	}
	callCtx, cancel := d.call(ctx)
	n, err := d.store.MarkConversationRead(callCtx, visitor, byVisitor, upTo, d.now())
	cancel()
	if err != nil {
		return storeFailed("marking read", err)
	}
	if n == 0 {
		return nil
	}
	by := "agent"
	if byVisitor {
		by = "visitor"
	}
	receipt := receiptFrame{Type: typeReceipt, Visitor: visitor, By: by, UpTo: upTo}
	d.toUIDs(ctx, receipt, visitor)
	d.toAgents(ctx, receipt)
	return nil
}

// receiptFrame says the visitor (by "visitor") or an agent (by "agent")
// read the other side's messages up to UpTo.
type receiptFrame struct {
	Type    string `json:"type"`
	Visitor string `json:"visitor"`
	By      string `json:"by"`
	UpTo    int64  `json:"upTo"`
}
