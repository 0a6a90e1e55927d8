package desk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gatewire/gatewire/internal/chat"
	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// Defaults of Config's zero fields.
const (
	DefaultMaxOpen = 5
	DefaultGrace   = 30 * time.Second
	defaultTimeout = 5 * time.Second
	// defaultTypingGap is the least time between two relayed typing
	// indicators of one sender in one conversation; more are dropped.
	defaultTypingGap = time.Second
	// typingExpires is how long a client shows a typing indicator after
	// the last one it got.
	typingExpires = 5 * time.Second
	// roleTTL is how long a uid's role is cached.
	roleTTL = 30 * time.Second
	// maxDrain bounds the conversations one drain of the queue assigns.
	maxDrain = 200
	// defaultHistory and maxHistory bound a history page.
	defaultHistory = 20
	maxHistory     = 100
)

// AgentsGroup is the group every agent console connection joins: desk-wide
// updates (the list, presence, canned replies) go to it.
const AgentsGroup = "desk:agents"

// Config configures a Desk. The zero Config is valid.
type Config struct {
	// MaxOpen caps the open conversations automatic assignment gives an
	// agent; zero means DefaultMaxOpen, negative means no cap.
	MaxOpen int
	// Grace is how long an agent may be without any connection before
	// going offline; zero means DefaultGrace.
	Grace time.Duration
	// Timeout bounds each store and API call; zero means 5s.
	Timeout time.Duration
	// TypingGap is the least time between two relayed typing indicators of
	// one sender in one conversation; zero means 1s.
	TypingGap time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Images holds uploaded images (image messages must name one the
	// sender uploaded); nil means the store.
	Images store.ImageStore
}

// Desk is the customer-service desk: a chat.Extension handling the "desk.*"
// requests of visitors and agents, and a background sweeper (Run) that
// keeps agents' presence true. It holds no per-connection state; every
// worker of a cluster may run one on the same store.
type Desk struct {
	maxOpen   int
	grace     time.Duration
	timeout   time.Duration
	typingGap time.Duration
	now       func() time.Time
	api       worker.API
	store     store.Store
	images    store.ImageStore
	saver     *store.Batcher
	log       *slog.Logger
	closeOnce sync.Once
	// sweepSoon asks the sweeper for an early round (an agent left).
	sweepSoon chan struct{}

	mu     sync.Mutex
	roles  map[string]roleEntry    // uid → cached role
	typing map[typingKey]time.Time // last relayed typing indicator
}

type roleEntry struct {
	user    store.User
	found   bool
	expires time.Time
}

type typingKey struct{ from, visitor string }

var _ chat.Extension = (*Desk)(nil)

// New returns a Desk on st reaching clients through api. Close it after the
// worker stopped.
func New(cfg Config, api worker.API, st store.Store, log *slog.Logger) *Desk {
	d := &Desk{
		maxOpen:   cfg.MaxOpen,
		grace:     cfg.Grace,
		timeout:   cfg.Timeout,
		typingGap: cfg.TypingGap,
		now:       cfg.Now,
		api:       api,
		store:     st,
		images:    cfg.Images,
		log:       log,
		sweepSoon: make(chan struct{}, 1),
		roles:     map[string]roleEntry{},
		typing:    map[typingKey]time.Time{},
	}
	if d.maxOpen == 0 {
		d.maxOpen = DefaultMaxOpen
	}
	if d.grace <= 0 {
		d.grace = DefaultGrace
	}
	if d.timeout <= 0 {
		d.timeout = defaultTimeout
	}
	if d.typingGap <= 0 {
		d.typingGap = defaultTypingGap
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.images == nil {
		d.images = st
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.saver = store.NewBatcher(st, 0, 0)
	return d
}

// Close stops the Desk's background writer. It is idempotent.
func (d *Desk) Close() {
	d.closeOnce.Do(d.saver.Close)
}

// HandlesType reports whether typ is a desk request ("desk.*").
func (d *Desk) HandlesType(typ string) bool { return strings.HasPrefix(typ, "desk.") }

// OnClose asks the sweeper to look at an agent's connections soon, so that
// the grace period starts when the last one left. It reads only the role
// cache, which every desk request fills: a close costs no store query, and
// an agent whose role was not cached is seen by the next regular sweep.
func (d *Desk) OnClose(ctx context.Context, c *worker.Client) {
	if c.UID == "" {
		return
	}
	d.mu.Lock()
	e, hit := d.roles[c.UID]
	d.mu.Unlock()
	if hit && e.found && e.user.Role == store.RoleAgent {
		select {
		case d.sweepSoon <- struct{}{}:
		default:
		}
	}
}

// OnRequest handles one desk request; a refused one gets an error frame.
func (d *Desk) OnRequest(ctx context.Context, c *worker.Client, typ string, data []byte) {
	ferr := d.dispatch(ctx, c, typ, data)
	if ferr == nil {
		return
	}
	if ferr.err != nil {
		d.log.WarnContext(ctx, "desk request failed", "client_id", c.ID, "uid", c.UID, "type", typ, "code", ferr.code, "err", ferr.err)
	} else {
		d.log.DebugContext(ctx, "desk request refused", "client_id", c.ID, "uid", c.UID, "type", typ, "code", ferr.code)
	}
	d.reply(ctx, c, errorFrame{Type: typeError, Code: ferr.code, Message: ferr.message, Ref: typ, CMID: ferr.cmid})
}

func (d *Desk) dispatch(ctx context.Context, c *worker.Client, typ string, data []byte) *frameError {
	var req request
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return refuse(codeInvalidField, fmt.Sprintf("field %q has the wrong JSON type", typeErr.Field))
		}
		return refuse(codeInvalidJSON, "the frame is not a JSON object")
	}
	if c.UID == "" {
		return refuse(codeNotBound, "bind this connection to a uid before using the desk")
	}
	if c.UID == store.DeskUID {
		return refuse(codeForbidden, `uid "desk" is reserved`)
	}
	u, _ := d.user(ctx, c.UID)
	if u.Role == store.RoleAgent {
		return d.agentRequest(ctx, c, u, req)
	}
	return d.visitorRequest(ctx, c, req)
}

// call returns a context for one store or API call.
func (d *Desk) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.timeout)
}

// user returns the user uid is (cached for roleTTL); ok is false when there
// is no such user or the store failed (then uid is taken for a visitor).
func (d *Desk) user(ctx context.Context, uid string) (store.User, bool) {
	now := time.Now()
	d.mu.Lock()
	e, hit := d.roles[uid]
	d.mu.Unlock()
	if hit && now.Before(e.expires) {
		return e.user, e.found
	}
	callCtx, cancel := d.call(ctx)
	users, err := d.store.Users(callCtx, uid)
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk: load user", "uid", uid, "err", err)
		return store.User{UID: uid, Role: store.RoleVisitor}, false
	}
	u, found := users[uid]
	if !found {
		u = store.User{UID: uid, Role: store.RoleVisitor}
	}
	d.mu.Lock()
	if len(d.roles) > 100_000 {
		clear(d.roles)
	}
	d.roles[uid] = roleEntry{user: u, found: found, expires: now.Add(roleTTL)}
	d.mu.Unlock()
	return u, found
}

// profileOf returns the public profile of uid.
func (d *Desk) profileOf(ctx context.Context, uid string) profile {
	u, _ := d.user(ctx, uid)
	p := profile{UID: uid, Nickname: u.Nickname, Avatar: u.AvatarURL}
	if p.Nickname == "" {
		p.Nickname = uid
	}
	if p.Avatar == "" {
		p.Avatar = "/avatars/" + uid + ".svg"
	}
	return p
}

// reply sends one frame to the connection c.
func (d *Desk) reply(ctx context.Context, c *worker.Client, v any) {
	data, err := chat.EncodeFrame(v)
	if err != nil {
		d.log.ErrorContext(ctx, "desk: encode reply", "err", err)
		return
	}
	callCtx, cancel := d.call(ctx)
	err = d.api.SendToClient(callCtx, c.ID, data, false)
	cancel()
	if err != nil && !errors.Is(err, worker.ErrNotFound) {
		d.log.WarnContext(ctx, "desk: reply", "client_id", c.ID, "err", err)
	}
}

// toUIDs sends one frame to every connection of uids (empty uids are
// skipped) and returns how many it reached.
func (d *Desk) toUIDs(ctx context.Context, v any, uids ...string) int {
	var to []string
	for _, u := range uids {
		if u != "" && u != store.DeskUID {
			to = append(to, u)
		}
	}
	if len(to) == 0 {
		return 0
	}
	data, err := chat.EncodeFrame(v)
	if err != nil {
		d.log.ErrorContext(ctx, "desk: encode frame", "err", err)
		return 0
	}
	callCtx, cancel := d.call(ctx)
	n, err := d.api.SendToUID(callCtx, to, data, false)
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk: send to uids", "uids", to, "err", err)
	}
	return n
}

// toAgents sends one frame to every agent console.
func (d *Desk) toAgents(ctx context.Context, v any) {
	data, err := chat.EncodeFrame(v)
	if err != nil {
		d.log.ErrorContext(ctx, "desk: encode frame", "err", err)
		return
	}
	callCtx, cancel := d.call(ctx)
	_, err = d.api.SendToGroup(callCtx, []string{AgentsGroup}, data, false, nil)
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk: send to agents", "err", err)
	}
}

// storeFailed wraps a store error for the client.
func storeFailed(what string, err error) *frameError {
	if errors.Is(err, store.ErrInvalid) {
		return failed(codeInvalidField, what+": invalid input", err)
	}
	return failed(codeStoreFailed, what+" failed; try again", err)
}

// messageFrame renders a stored message of a desk conversation.
func (d *Desk) messageFrame(ctx context.Context, typ string, m store.Message) messageFrame {
	f := messageFrame{Type: typ, Visitor: m.Conv, MsgID: m.ID, From: m.From, Role: roleOf(m), Kind: int(m.Kind),
		TS: m.CreatedAt.UnixMilli(), Read: !m.ReadAt.IsZero(), CMID: m.CMID}
	if f.Role == "agent" {
		p := d.profileOf(ctx, m.From)
		f.Name, f.Avatar = p.Nickname, p.Avatar
	}
	switch m.Kind {
	case store.KindImage:
		f.Image = &imageRef{URL: m.Text, Thumb: m.Text + "/thumb"}
	case store.KindSystem:
		f.System = decodeSystem(m.Text)
	default:
		f.Text = m.Text
	}
	return f
}

// conversationFrame renders a list entry.
func (d *Desk) conversationFrame(ctx context.Context, typ string, s store.ConversationSummary) conversationFrame {
	f := conversationFrame{Type: typ, Visitor: s.Visitor, State: string(s.State), Agent: s.Agent, LastAgent: s.LastAgent,
		Unread: s.Unread,
		Info: infoFrame{Page: s.Info.PageURL, Referrer: s.Info.Referrer, UA: s.Info.UserAgent, Email: s.Info.Email,
			FirstSeen: s.FirstSeen.UnixMilli(), LastSeen: s.LastSeen.UnixMilli()}}
	if !s.QueuedAt.IsZero() {
		f.QueuedAt = s.QueuedAt.UnixMilli()
	}
	if s.Last.ID != 0 {
		last := d.messageFrame(ctx, "", s.Last)
		last.Text = preview(last.Text)
		f.Last = &last
	}
	return f
}

// publishConversation sends the agents the conversation's new list entry.
func (d *Desk) publishConversation(ctx context.Context, visitor string) {
	callCtx, cancel := d.call(ctx)
	list, err := d.store.Conversations(callCtx, store.ConversationFilter{Visitor: visitor, Limit: 1})
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk: load conversation summary", "visitor", visitor, "err", err)
		return
	}
	if len(list) == 1 {
		d.toAgents(ctx, d.conversationFrame(ctx, typeConversation, list[0]))
	}
}

// status computes what a visitor sees of their conversation.
func (d *Desk) status(ctx context.Context, c store.Conversation) (statusFrame, error) {
	f := statusFrame{Type: typeStatus, State: string(c.State), Email: c.Info.Email}
	if f.State == "" {
		f.State = string(store.ConversationNew)
	}
	callCtx, cancel := d.call(ctx)
	agents, err := d.store.Agents(callCtx)
	cancel()
	if err != nil {
		return f, err
	}
	for _, a := range agents {
		if a.Presence == store.PresenceOnline {
			f.Online++
		}
		if c.State == store.ConversationOpen && a.UID == c.Agent {
			p := d.profileOf(ctx, a.UID)
			p.Presence = string(a.Presence)
			f.Agent = &p
		}
	}
	if c.State == store.ConversationOpen && f.Agent == nil { // an agent no longer listed
		p := d.profileOf(ctx, c.Agent)
		p.Presence = string(store.PresenceOffline)
		f.Agent = &p
	}
	if c.State == store.ConversationQueued {
		callCtx, cancel := d.call(ctx)
		f.Position, err = d.store.QueuePosition(callCtx, c.Visitor)
		cancel()
		if err != nil {
			return f, err
		}
	}
	return f, nil
}

// sendStatus sends the visitor's connections their conversation's status.
func (d *Desk) sendStatus(ctx context.Context, visitor string) {
	callCtx, cancel := d.call(ctx)
	c, err := d.store.Conversation(callCtx, visitor)
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk: load conversation", "visitor", visitor, "err", err)
		return
	}
	f, err := d.status(ctx, c)
	if err != nil {
		d.log.WarnContext(ctx, "desk: visitor status", "visitor", visitor, "err", err)
		return
	}
	d.toUIDs(ctx, f, visitor)
}

// system writes a system line into the visitor's conversation and sends it
// to the visitor and to the agents named. System lines are history, not
// activity: they neither move the conversation up the list nor become its
// preview.
func (d *Desk) system(ctx context.Context, visitor, code string, params map[string]string, agents ...string) {
	text, _ := json.Marshal(systemLine{Code: code, Params: params})
	callCtx, cancel := d.call(ctx)
	saved, err := d.saver.Save(callCtx, store.NewMessage{From: store.DeskUID, To: visitor, Conv: visitor, Kind: store.KindSystem, Text: string(text)})
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk: write system line", "visitor", visitor, "code", code, "err", err)
		return
	}
	d.toUIDs(ctx, d.messageFrame(ctx, typeMessage, saved.Message), append([]string{visitor}, agents...)...)
}

// noteActivity moves the conversation up the agents' list.
func (d *Desk) noteActivity(ctx context.Context, visitor string, id int64) {
	callCtx, cancel := d.call(ctx)
	err := d.store.NoteActivity(callCtx, visitor, id, d.now())
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk: note activity", "visitor", visitor, "msg_id", id, "err", err)
	}
}

// assigned announces that agent got the visitor's conversation (reason
// "new", "queue", "claim" or "transfer"; by is the transferring agent).
func (d *Desk) assigned(ctx context.Context, c store.Conversation, reason, by string) {
	if reason != "transfer" {
		d.system(ctx, c.Visitor, sysAssigned, map[string]string{"agent": c.Agent, "agent_name": d.profileOf(ctx, c.Agent).Nickname}, c.Agent)
	}
	callCtx, cancel := d.call(ctx)
	list, err := d.store.Conversations(callCtx, store.ConversationFilter{Visitor: c.Visitor, Limit: 1})
	cancel()
	if err != nil || len(list) == 0 {
		list = []store.ConversationSummary{{Conversation: c}}
	}
	conv := d.conversationFrame(ctx, "", list[0])
	d.toUIDs(ctx, assignedFrame{Type: typeAssigned, Reason: reason, By: by, Conversation: conv}, c.Agent)
	d.toAgents(ctx, d.conversationFrame(ctx, typeConversation, list[0]))
	d.sendStatus(ctx, c.Visitor)
}

// assignedFrame tells an agent a conversation is theirs now.
type assignedFrame struct {
	Type         string            `json:"type"`
	Reason       string            `json:"reason"`
	By           string            `json:"by,omitempty"`
	Conversation conversationFrame `json:"conversation"`
}

// drain assigns queued conversations, oldest first, while agents have room.
func (d *Desk) drain(ctx context.Context) {
	for range maxDrain {
		callCtx, cancel := d.call(ctx)
		a, err := d.store.AssignNext(callCtx, d.maxOpen, d.now())
		cancel()
		if err != nil {
			d.log.WarnContext(ctx, "desk: assign from the queue", "err", err)
			return
		}
		if !a.Assigned {
			return
		}
		d.log.InfoContext(ctx, "desk: conversation assigned from the queue", "visitor", a.Conversation.Visitor, "agent", a.Conversation.Agent)
		d.assigned(ctx, a.Conversation, "queue", "")
	}
}

// requeued tells the visitors whose conversations went back to the queue.
func (d *Desk) requeued(ctx context.Context, visitors []string) {
	for _, v := range visitors {
		d.sendStatus(ctx, v)
		d.publishConversation(ctx, v)
	}
}
