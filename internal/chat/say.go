package chat

import (
	"context"
	"time"

	"github.com/gatewire/gatewire/internal/metrics"
	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// say handles {"type":"say","frontId":"85","toId":"86","data":"...",
// "cmid":"..."}: persist, then deliver, then acknowledge. The message is
// stored first; a "text" frame then goes to every connection of toId and a
// "save" frame, carrying the stored msg_id, to every connection of the
// sender's uid. A retry with the same cmid stores nothing new, is not
// delivered again once it was delivered (nor while its first say may still
// be delivering it: Config.RetrySettle), and gets the same save. If the
// store fails the sender gets an error frame naming the cmid and no save.
func (h *Handler) say(ctx context.Context, c *worker.Client, req request) *frameError {
	start := time.Now()
	ferr := h.sayAt(ctx, c, req, start)
	switch {
	case ferr == nil:
	case ferr.code == codeStoreFailed:
		metrics.SaysStoreFailed.Inc()
	default:
		metrics.SaysRefused.Inc()
	}
	return ferr
}

// sayAt handles a say that arrived at start.
func (h *Handler) sayAt(ctx context.Context, c *worker.Client, req request, start time.Time) *frameError {
	if c.UID == "" {
		return newFrameError(codeNotBound, "bind this connection to a uid before sending messages")
	}
	s, ferr := decodeSay(req)
	if ferr != nil {
		return ferr
	}
	if s.frontID != c.UID {
		return newFrameError(codeForbidden, "frontId must be the uid this connection is bound to").withCMID(s.cmid)
	}
	if store.IsAnonymousVisitor(c.UID) {
		// Anyone may get such an identity: it reaches only the desk.
		return newFrameError(codeForbidden, "a widget visitor writes to the desk with desk.say, not to a uid").withCMID(s.cmid)
	}
	callCtx, cancel := context.WithTimeout(ctx, h.timeout)
	saved, err := h.saver.Save(callCtx, store.NewMessage{From: s.frontID, To: s.toID, Text: s.data, Kind: store.KindText, CMID: s.cmid})
	cancel()
	if err != nil {
		return storeError(err, "the message was not stored; send it again with the same cmid",
			"store message from %s to %s", s.frontID, s.toID).withCMID(s.cmid)
	}
	metrics.Since(metrics.SayPersisted, start)
	if saved.Duplicate {
		metrics.SaysDuplicate.Inc()
	} else {
		metrics.SaysSaved.Inc()
	}
	m := saved.Message
	msg := h.messageFrame(typeText, c.ID, m)

	// The say that stored the message delivers it; a retry delivers only a
	// settled message nobody delivered yet, and only if it can claim it.
	deliver := !saved.Duplicate
	delivered := m.Delivered || h.marker.Pending(m.ID)
	if saved.Duplicate && !delivered {
		callCtx, cancel = context.WithTimeout(ctx, h.timeout)
		claimed, err := h.store.ClaimDelivery(callCtx, m.ID, h.retrySettle)
		cancel()
		if err != nil {
			h.log.WarnContext(ctx, "claim delivery of a retried message", "client_id", c.ID, "uid", c.UID, "msg_id", m.ID, "err", err)
		}
		// Not claimed: too young to tell, or its delivery was recorded
		// after the message was read, or another retry is delivering it.
		// The save says is_read 0 unless this say delivers it.
		deliver = claimed
	}
	// One directory lookup finds the connections of both ends.
	uids := []string{c.UID}
	if deliver && m.To != c.UID {
		uids = append(uids, m.To)
	}
	callCtx, cancel = context.WithTimeout(ctx, h.timeout)
	conns, err := h.api.ClientIDsByUIDs(callCtx, uids)
	cancel()
	if err != nil {
		// The message is stored: it waits as unread and reaches the
		// recipient through history; a retry gets the save.
		h.log.WarnContext(ctx, "look up the connections of a message's ends", "client_id", c.ID, "uid", c.UID, "msg_id", m.ID, "err", err)
	}
	if deliver {
		delivered = h.deliver(ctx, c, msg, m, saved.Duplicate, conns[m.To])
		metrics.Since(metrics.SayDelivered, start)
	}

	isRead := 0
	if delivered {
		isRead = 1
	}
	msg.Type, msg.IsRead, msg.CMID = typeSave, &isRead, m.CMID
	save, err := EncodeFrame(msg)
	if err != nil {
		h.log.ErrorContext(ctx, "encode save frame", "client_id", c.ID, "uid", c.UID, "err", err)
		return nil
	}
	// Nothing depends on the save's fate, so the gateways need not answer.
	callCtx, cancel = context.WithTimeout(ctx, h.timeout)
	err = h.api.Post(callCtx, conns[c.UID], save, false)
	cancel()
	if err != nil {
		// The message is stored and was handed on; a retry with the same
		// cmid gets this save again.
		h.log.WarnContext(ctx, "send save frame to sender", "client_id", c.ID, "uid", c.UID, "msg_id", m.ID, "err", err)
	}
	return nil
}

// sendTo sends data to the connections clientIDs and returns how many got
// it. No connections means no call (SendToAll without client_ids would
// send to every connection).
func (h *Handler) sendTo(ctx context.Context, clientIDs []string, data []byte) (int, error) {
	if len(clientIDs) == 0 {
		return 0, nil
	}
	callCtx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	return h.api.SendToAll(callCtx, data, false, clientIDs, nil)
}

// messageFrame builds the wire form of a stored message; senderClientID is
// the "id" field ("" when unknown, as in history).
func (h *Handler) messageFrame(typ, senderClientID string, m store.Message) textFrame {
	return textFrame{
		Type:    typ,
		ID:      senderClientID,
		FrontID: m.From,
		ToID:    m.To,
		Date:    m.CreatedAt.In(h.loc).Format(dateLayout),
		Data:    escapeText(m.Text),
		Raw:     m.Text,
		MsgID:   m.ID,
	}
}

// deliver sends the text frame to the recipient's connections conns and
// reports whether any got it. When none did, the delivery is released so
// that a retry of the message delivers it; it waits as unread meanwhile.
func (h *Handler) deliver(ctx context.Context, c *worker.Client, msg textFrame, m store.Message, claimed bool, conns []string) bool {
	text, err := EncodeFrame(msg)
	if err != nil { // cannot happen: every field is a string or a number
		h.log.ErrorContext(ctx, "encode text frame", "client_id", c.ID, "msg_id", m.ID, "err", err)
		return false
	}
	n, err := h.sendTo(ctx, conns, text)
	if err != nil {
		// The message is stored: it waits as unread and reaches the
		// recipient through history. The sender still gets its save.
		h.log.WarnContext(ctx, "deliver message", "client_id", c.ID, "uid", c.UID, "msg_id", m.ID, "err", err)
	}
	switch {
	case n > 0 && !claimed:
		// Record the delivery, so that a retry does not deliver again.
		h.marker.Mark(m.ID)
	case n == 0 && claimed:
		callCtx, cancel := context.WithTimeout(ctx, h.timeout)
		defer cancel()
		// Give the claim back, so that a later retry delivers it.
		if err := h.store.ReleaseDelivery(callCtx, m.ID); err != nil {
			h.log.WarnContext(ctx, "release delivery", "client_id", c.ID, "msg_id", m.ID, "err", err)
		}
	}
	return n > 0
}
