package desk

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// agentRequest handles a request of a connection bound to an agent.
func (d *Desk) agentRequest(ctx context.Context, c *worker.Client, u store.User, req request) *frameError {
	switch req.Type {
	case typeHello:
		return d.agentHello(ctx, c, u)
	case typePresence:
		return d.agentPresence(ctx, c, req)
	case typeList:
		return d.agentList(ctx, c, req)
	case typeAgents:
		return d.agentAgents(ctx, c)
	case typeCanned:
		return d.agentCanned(ctx, c)
	case typeCannedSave, typeCannedDelete:
		return d.agentCannedChange(ctx, req)
	case typeEmail:
		return refuse(codeForbidden, "only visitors leave an email")
	}
	// The rest are about one conversation.
	if req.Visitor == "" {
		return refuse(codeMissingField, `field "visitor" is required`)
	}
	if req.Visitor == c.UID || req.Visitor == store.DeskUID {
		return refuse(codeInvalidField, `field "visitor" must name a visitor`)
	}
	switch req.Type {
	case typeHistory:
		return d.history(ctx, c, req.Visitor, req)
	case typeRead:
		return d.read(ctx, req.Visitor, false, req.UpTo)
	case typeSay:
		return d.agentSay(ctx, c, req)
	case typeTyping:
		return d.agentTyping(ctx, c, req)
	case typeClaim:
		return d.agentClaim(ctx, c, req)
	case typeTransfer:
		return d.agentTransfer(ctx, c, req)
	case typeClose:
		return d.agentClose(ctx, c, req)
	default:
		return refuse(codeUnknownType, fmt.Sprintf("unknown desk request %q", req.Type))
	}
}

// agentProfiles lists the agents with their presence and load.
func (d *Desk) agentProfiles(ctx context.Context) ([]profile, error) {
	callCtx, cancel := d.call(ctx)
	agents, err := d.store.Agents(callCtx)
	cancel()
	if err != nil {
		return nil, err
	}
	out := make([]profile, len(agents))
	for i, a := range agents {
		open := a.Open
		out[i] = profile{UID: a.UID, Nickname: a.Nickname, Avatar: a.AvatarURL, Presence: string(a.Presence), Open: &open}
		if out[i].Nickname == "" {
			out[i].Nickname = a.UID
		}
		if out[i].Avatar == "" {
			out[i].Avatar = "/avatars/" + a.UID + ".svg"
		}
	}
	return out, nil
}

// agentHello handles {"type":"desk.hello"} from an agent's console: the
// connection joins the agents' group, the agent counts as connected again,
// and gets a welcome with their presence, the other agents and the canned
// replies.
func (d *Desk) agentHello(ctx context.Context, c *worker.Client, u store.User) *frameError {
	callCtx, cancel := d.call(ctx)
	err := d.api.JoinGroup(callCtx, c.ID, AgentsGroup)
	cancel()
	if err != nil {
		return failed(codeUnavailable, "joining the desk failed; try again", err)
	}
	callCtx, cancel = d.call(ctx)
	err = d.store.AgentsConnected(callCtx, []string{u.UID})
	cancel()
	if err != nil {
		return storeFailed("recording the connection", err)
	}
	agents, err := d.agentProfiles(ctx)
	if err != nil {
		return storeFailed("loading the agents", err)
	}
	canned, err := d.cannedReplies(ctx)
	if err != nil {
		return storeFailed("loading the canned replies", err)
	}
	w := welcomeFrame{Type: typeWelcome, Role: "agent", UID: u.UID, Agents: agents, MaxOpen: d.maxOpen, Canned: canned}
	for i := range agents {
		if agents[i].UID == u.UID {
			w.Self = &agents[i]
		}
	}
	if w.Self == nil {
		p := d.profileOf(ctx, u.UID)
		p.Presence = string(store.PresenceOffline)
		w.Self = &p
	}
	d.reply(ctx, c, w)
	return nil
}

// presenceFrame announces an agent's presence.
type presenceFrame struct {
	Type   string `json:"type"`
	UID    string `json:"uid"`
	Status string `json:"status"`
	// Reason is "agent" (the agent switched) or "disconnected" (the grace
	// period ran out).
	Reason string `json:"reason"`
}

// agentPresence handles {"type":"desk.presence","status":"online|away|offline"}.
func (d *Desk) agentPresence(ctx context.Context, c *worker.Client, req request) *frameError {
	p := store.Presence(req.Status)
	if p != store.PresenceOnline && p != store.PresenceAway && p != store.PresenceOffline {
		return refuse(codeInvalidField, `field "status" must be "online", "away" or "offline"`)
	}
	callCtx, cancel := d.call(ctx)
	changed, released, err := d.store.SetPresence(callCtx, c.UID, p, d.now())
	cancel()
	if err != nil {
		return storeFailed("setting the presence", err)
	}
	f := presenceFrame{Type: typePresence, UID: c.UID, Status: string(p), Reason: "agent"}
	if !changed {
		d.reply(ctx, c, f)
		return nil
	}
	d.log.InfoContext(ctx, "desk: agent presence", "agent", c.UID, "presence", p, "released", len(released))
	d.presenceChanged(ctx, f, released)
	return nil
}

// presenceChanged tells everyone concerned that an agent's presence changed
// and reassigns what it freed or what the agent can take.
func (d *Desk) presenceChanged(ctx context.Context, f presenceFrame, released []string) {
	d.toAgents(ctx, f)
	// The agent's visitors see the new presence.
	callCtx, cancel := d.call(ctx)
	mine, err := d.store.Conversations(callCtx, store.ConversationFilter{Agent: f.UID, Limit: 200})
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk: load an agent's conversations", "agent", f.UID, "err", err)
	}
	for _, s := range mine {
		d.sendStatus(ctx, s.Visitor)
	}
	d.requeued(ctx, released)
	d.drain(ctx)
}

// agentList handles {"type":"desk.list","filter":"mine|unassigned|all",
// "before":<last_msg_id>,"limit":50}.
func (d *Desk) agentList(ctx context.Context, c *worker.Client, req request) *frameError {
	f := store.ConversationFilter{Before: req.Before, Limit: req.Limit}
	switch req.Filter {
	case "mine", "":
		f.Agent = c.UID
	case "unassigned":
		f.State = store.ConversationQueued
	case "all":
	default:
		return refuse(codeInvalidField, `field "filter" must be "mine", "unassigned" or "all"`)
	}
	if f.Limit < 0 || f.Limit > 200 || f.Before < 0 {
		return refuse(codeInvalidField, `"limit" must be 0 to 200 and "before" not negative`)
	}
	if f.Limit == 0 {
		f.Limit = 50
	}
	want := f.Limit
	f.Limit++
	callCtx, cancel := d.call(ctx)
	list, err := d.store.Conversations(callCtx, f)
	cancel()
	if err != nil {
		return storeFailed("loading the conversations", err)
	}
	more := len(list) > want
	if more {
		list = list[:want]
	}
	out := listFrame{Type: typeList, Filter: req.Filter, Conversations: make([]conversationFrame, len(list)), More: more}
	if out.Filter == "" {
		out.Filter = "mine"
	}
	for i, s := range list {
		out.Conversations[i] = d.conversationFrame(ctx, "", s)
	}
	d.reply(ctx, c, out)
	return nil
}

// listFrame answers desk.list, newest activity first.
type listFrame struct {
	Type          string              `json:"type"`
	Filter        string              `json:"filter"`
	Conversations []conversationFrame `json:"conversations"`
	More          bool                `json:"more"`
}

// agentsFrame answers desk.agents.
type agentsFrame struct {
	Type   string    `json:"type"`
	Agents []profile `json:"agents"`
}

func (d *Desk) agentAgents(ctx context.Context, c *worker.Client) *frameError {
	agents, err := d.agentProfiles(ctx)
	if err != nil {
		return storeFailed("loading the agents", err)
	}
	d.reply(ctx, c, agentsFrame{Type: typeAgents, Agents: agents})
	return nil
}

// agentSay handles {"type":"desk.say","visitor":"v_...","data":"...",
// "cmid":"..."} (or "image"): a reply in a conversation the agent serves.
func (d *Desk) agentSay(ctx context.Context, c *worker.Client, req request) *frameError {
	kind, text, ferr := d.decodeContent(ctx, c.UID, req)
	if ferr != nil {
		ferr.cmid = req.CMID
		return ferr
	}
	if len(req.CMID) > 64 {
		return refuse(codeInvalidField, `field "cmid" must be at most 64 bytes`)
	}
	if ferr := d.mustServe(ctx, c.UID, req.Visitor); ferr != nil {
		ferr.cmid = req.CMID
		return ferr
	}
	callCtx, cancel := d.call(ctx)
	saved, err := d.saver.Save(callCtx, store.NewMessage{From: c.UID, To: req.Visitor, Conv: req.Visitor, Kind: kind, Text: text, CMID: req.CMID})
	cancel()
	if err != nil {
		f := storeFailed("storing the message", err)
		f.cmid = req.CMID
		return f
	}
	msg := d.messageFrame(ctx, typeMessage, saved.Message)
	if saved.Duplicate {
		d.toUIDs(ctx, msg, c.UID)
		return nil
	}
	d.noteActivity(ctx, req.Visitor, saved.Message.ID)
	d.toUIDs(ctx, msg, req.Visitor, c.UID)
	d.publishConversation(ctx, req.Visitor)
	return nil
}

// mustServe refuses unless agent serves the visitor's conversation.
func (d *Desk) mustServe(ctx context.Context, agent, visitor string) *frameError {
	callCtx, cancel := d.call(ctx)
	conv, err := d.store.Conversation(callCtx, visitor)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(codeNotFound, "no such conversation")
	case err != nil:
		return storeFailed("loading the conversation", err)
	case conv.State != store.ConversationOpen || conv.Agent != agent:
		return refuse(codeNotAssigned, "this conversation is not yours; claim it first")
	}
	return nil
}

// agentTyping relays {"type":"desk.typing","visitor":"v_..."} to the
// visitor; nothing is stored.
func (d *Desk) agentTyping(ctx context.Context, c *worker.Client, req request) *frameError {
	if !d.typingAllowed(c.UID, req.Visitor) {
		return nil
	}
	if ferr := d.mustServe(ctx, c.UID, req.Visitor); ferr != nil {
		return ferr
	}
	d.toUIDs(ctx, typingFrame{Type: typeTyping, Visitor: req.Visitor, From: c.UID, Role: "agent",
		Name: d.profileOf(ctx, c.UID).Nickname, ExpiresMS: typingExpires.Milliseconds()}, req.Visitor)
	return nil
}

// agentClaim handles {"type":"desk.claim","visitor":"v_..."}: the agent
// takes a conversation nobody serves.
func (d *Desk) agentClaim(ctx context.Context, c *worker.Client, req request) *frameError {
	callCtx, cancel := d.call(ctx)
	a, err := d.store.Claim(callCtx, req.Visitor, c.UID, d.now())
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(codeNotFound, "no such conversation")
	case errors.Is(err, store.ErrConflict):
		return refuse(codeNotAssigned, "another agent serves this conversation")
	case err != nil:
		return storeFailed("claiming the conversation", err)
	}
	if !a.Assigned { // already the agent's: tell the console again
		d.assignedAgain(ctx, a.Conversation)
		return nil
	}
	d.log.InfoContext(ctx, "desk: conversation claimed", "visitor", req.Visitor, "agent", c.UID)
	d.assigned(ctx, a.Conversation, "claim", c.UID)
	return nil
}

// assignedAgain repeats desk.assigned to the agent serving c.
func (d *Desk) assignedAgain(ctx context.Context, c store.Conversation) {
	callCtx, cancel := d.call(ctx)
	list, err := d.store.Conversations(callCtx, store.ConversationFilter{Visitor: c.Visitor, Limit: 1})
	cancel()
	if err != nil || len(list) == 0 {
		list = []store.ConversationSummary{{Conversation: c}}
	}
	d.toUIDs(ctx, assignedFrame{Type: typeAssigned, Reason: "claim", By: c.Agent, Conversation: d.conversationFrame(ctx, "", list[0])}, c.Agent)
}

// agentTransfer handles {"type":"desk.transfer","visitor":"v_...","to":"88"}:
// the conversation, with its whole history, moves to another online agent;
// a system line records it, the target is notified.
func (d *Desk) agentTransfer(ctx context.Context, c *worker.Client, req request) *frameError {
	if req.To == "" {
		return refuse(codeMissingField, `field "to" is required`)
	}
	if to, _ := d.user(ctx, req.To); to.Role != store.RoleAgent {
		return refuse(codeAgentUnavailable, "the target is not an agent")
	}
	callCtx, cancel := d.call(ctx)
	conv, err := d.store.Transfer(callCtx, req.Visitor, c.UID, req.To, d.now())
	cancel()
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return refuse(codeAgentUnavailable, "the target agent is not online")
	case errors.Is(err, store.ErrConflict):
		return refuse(codeNotAssigned, "this conversation is not yours")
	case err != nil:
		return storeFailed("transferring the conversation", err)
	}
	d.log.InfoContext(ctx, "desk: conversation transferred", "visitor", req.Visitor, "from", c.UID, "to", req.To)
	d.system(ctx, req.Visitor, sysTransferred, map[string]string{
		"from": c.UID, "from_name": d.profileOf(ctx, c.UID).Nickname,
		"to": req.To, "to_name": d.profileOf(ctx, req.To).Nickname,
	}, c.UID, req.To)
	d.assigned(ctx, conv, "transfer", c.UID)
	return nil
}

// agentClose handles {"type":"desk.close","visitor":"v_..."}: the agent
// closes a conversation they serve; its place goes to the queue.
func (d *Desk) agentClose(ctx context.Context, c *worker.Client, req request) *frameError {
	callCtx, cancel := d.call(ctx)
	_, err := d.store.CloseConversation(callCtx, req.Visitor, c.UID, d.now())
	cancel()
	switch {
	case errors.Is(err, store.ErrConflict):
		return refuse(codeNotAssigned, "this conversation is not yours")
	case err != nil:
		return storeFailed("closing the conversation", err)
	}
	d.system(ctx, req.Visitor, sysClosed, map[string]string{"agent": c.UID, "agent_name": d.profileOf(ctx, c.UID).Nickname}, c.UID)
	d.publishConversation(ctx, req.Visitor)
	d.sendStatus(ctx, req.Visitor)
	d.drain(ctx)
	return nil
}

// cannedFrame lists the canned replies.
type cannedFrame struct {
	Type    string        `json:"type"`
	Replies []cannedReply `json:"replies"`
}

func (d *Desk) cannedReplies(ctx context.Context) ([]cannedReply, error) {
	callCtx, cancel := d.call(ctx)
	list, err := d.store.CannedReplies(callCtx)
	cancel()
	if err != nil {
		return nil, err
	}
	out := make([]cannedReply, len(list))
	for i, r := range list {
		out[i] = cannedReply{Shortcut: r.Shortcut, Body: r.Body}
	}
	return out, nil
}

func (d *Desk) agentCanned(ctx context.Context, c *worker.Client) *frameError {
	list, err := d.cannedReplies(ctx)
	if err != nil {
		return storeFailed("loading the canned replies", err)
	}
	d.reply(ctx, c, cannedFrame{Type: typeCanned, Replies: list})
	return nil
}

// agentCannedChange handles desk.canned.save {"shortcut","body"} and
// desk.canned.delete {"shortcut"}; every console gets the new list.
func (d *Desk) agentCannedChange(ctx context.Context, req request) *frameError {
	callCtx, cancel := d.call(ctx)
	var err error
	if req.Type == typeCannedSave {
		err = d.store.SaveCannedReply(callCtx, store.CannedReply{Shortcut: req.Shortcut, Body: req.Body}, d.now())
	} else {
		err = d.store.DeleteCannedReply(callCtx, req.Shortcut)
	}
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(codeNotFound, "no such canned reply")
	case errors.Is(err, store.ErrInvalid):
		return refuse(codeInvalidField, "a shortcut is 1 to 64 of a-z, 0-9, - and _; a body 1 to 4096 bytes")
	case err != nil:
		return storeFailed("saving the canned reply", err)
	}
	list, err := d.cannedReplies(ctx)
	if err != nil {
		return storeFailed("loading the canned replies", err)
	}
	d.toAgents(ctx, cannedFrame{Type: typeCanned, Replies: list})
	return nil
}
