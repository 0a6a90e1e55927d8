package chat

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// history handles {"type":"history","toId":"86","limit":10,"before":42} (or
// "after" instead of "before"): the conversation between the bound uid and
// toId — nobody else's messages — oldest first. Without before/after it is
// the newest limit messages; before pages back, after catches up.
func (h *Handler) history(ctx context.Context, c *worker.Client, req request) *frameError {
	if c.UID == "" {
		return newFrameError(codeNotBound, "bind this connection to a uid before asking for history")
	}
	peer, ferr := req.uid(fieldToID)
	if ferr != nil {
		return ferr
	}
	limit, ferr := req.int(fieldLimit)
	if ferr != nil {
		return ferr
	}
	if limit == 0 {
		limit = defaultHistory
	}
	if limit > maxHistory {
		return errInvalidField(fieldLimit, fmt.Sprintf("at most %d", maxHistory))
	}
	before, ferr := req.int(fieldBefore)
	if ferr != nil {
		return ferr
	}
	after, ferr := req.int(fieldAfter)
	if ferr != nil {
		return ferr
	}
	if before != 0 && after != 0 {
		return newFrameError(codeInvalidField, `give "before" or "after", not both`)
	}
	callCtx, cancel := context.WithTimeout(ctx, h.timeout)
	msgs, err := h.store.History(callCtx, c.UID, peer, store.Page{Before: before, After: after, Limit: int(limit) + 1})
	cancel()
	if err != nil {
		return storeError(err, "history is unavailable; try again", "history %s/%s", c.UID, peer)
	}
	more := len(msgs) > int(limit)
	if more {
		if after != 0 {
			msgs = msgs[:limit] // the oldest after the cursor
		} else {
			msgs = msgs[len(msgs)-int(limit):] // the newest before it
		}
	}
	f := historyFrame{Type: typeHistory, ToID: peer, Messages: make([]historyItem, len(msgs)), More: more}
	for i, m := range msgs {
		isRead := 0
		if !m.ReadAt.IsZero() {
			isRead = 1
		}
		f.Messages[i] = historyItem{
			MsgID: m.ID, FrontID: m.From, ToID: m.To, Date: m.CreatedAt.In(h.loc).Format(dateLayout),
			Data: escapeText(m.Text), Raw: m.Text, Kind: int(m.Kind), IsRead: isRead,
		}
	}
	h.reply(ctx, c, f)
	return nil
}

// read handles {"type":"read","toId":"86","upTo":42}: the bound uid has read
// toId's messages up to id 42. Every connection of both uids gets a
// "receipt" frame; when nothing new was marked only the asking connection
// gets it, as an acknowledgement.
func (h *Handler) read(ctx context.Context, c *worker.Client, req request) *frameError {
	if c.UID == "" {
		return newFrameError(codeNotBound, "bind this connection to a uid before marking messages read")
	}
	peer, ferr := req.uid(fieldToID)
	if ferr != nil {
		return ferr
	}
	upTo, ferr := req.int(fieldUpTo)
	if ferr != nil {
		return ferr
	}
	if upTo == 0 {
		return errMissingField(fieldUpTo)
	}
	callCtx, cancel := context.WithTimeout(ctx, h.timeout)
	n, err := h.store.MarkRead(callCtx, c.UID, peer, upTo)
	cancel()
	if err != nil {
		return storeError(err, "the messages could not be marked read; try again", "mark read %s/%s", c.UID, peer)
	}
	receipt := receiptFrame{Type: typeReceipt, FrontID: c.UID, ToID: peer, UpTo: upTo}
	if n == 0 {
		h.reply(ctx, c, receipt)
		return nil
	}
	data, err := EncodeFrame(receipt)
	if err != nil {
		return &frameError{code: codeUnavailable, message: "the receipt could not be encoded", err: err}
	}
	callCtx, cancel = context.WithTimeout(ctx, h.timeout)
	_, err = h.api.SendToUID(callCtx, []string{peer, c.UID}, data, false)
	cancel()
	if err != nil {
		// The read state is stored; the peer sees it in history.
		h.log.WarnContext(ctx, "send read receipt", "client_id", c.ID, "uid", c.UID, "err", err)
	}
	return nil
}

// profile handles {"type":"profile","toId":"86"}: nickname, avatar and role
// of the bound uid and of toId (the seed's get/head and get/name). Unknown
// uids get their uid as nickname and a generated avatar.
func (h *Handler) profile(ctx context.Context, c *worker.Client, req request) *frameError {
	if c.UID == "" {
		return newFrameError(codeNotBound, "bind this connection to a uid before asking for profiles")
	}
	peer, ferr := req.uid(fieldToID)
	if ferr != nil {
		return ferr
	}
	callCtx, cancel := context.WithTimeout(ctx, h.timeout)
	users, err := h.store.Users(callCtx, c.UID, peer)
	cancel()
	if err != nil {
		return storeError(err, "profiles are unavailable; try again", "load users %s, %s", c.UID, peer)
	}
	h.reply(ctx, c, profileFrame{Type: typeProfile, Self: profileOf(c.UID, users), Peer: profileOf(peer, users)})
	return nil
}

func profileOf(uid string, users map[string]store.User) profile {
	u, ok := users[uid]
	p := profile{UID: uid, Nickname: u.Nickname, Avatar: u.AvatarURL, Role: string(u.Role)}
	if !ok || p.Nickname == "" {
		p.Nickname = uid
	}
	if p.Avatar == "" {
		p.Avatar = AvatarPath(uid)
	}
	if p.Role == "" {
		p.Role = string(store.RoleVisitor)
	}
	return p
}

// AvatarPath is where the web server serves the generated avatar of uid.
func AvatarPath(uid string) string {
	return "/avatars/" + url.PathEscape(uid) + ".svg"
}

// storeError is the error frame of a failed store call: invalid_field with
// the store's reason when it refused the request's values (a uid or text it
// cannot hold), else store_failed with retry, which says to try again. The
// logged error is err in the context the format and args describe.
func storeError(err error, retry, format string, args ...any) *frameError {
	logged := fmt.Errorf(format+": %w", append(args, err)...)
	if errors.Is(err, store.ErrInvalid) {
		return &frameError{code: codeInvalidField, message: "the request cannot be stored: " + err.Error(), err: logged}
	}
	return &frameError{code: codeStoreFailed, message: retry, err: logged}
}
