package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gatewire/gatewire/internal/worker"
)

// defaultTimeout bounds each API call when Config.Timeout is zero.
const defaultTimeout = 5 * time.Second

// dateLayout is PHP's date('Y-m-d H:i:s').
const dateLayout = "2006-01-02 15:04:05"

// Config configures a Handler. The zero Config is valid and refuses
// token-less binds.
type Config struct {
	// InsecureBind accepts the seed's bind request, which carries no proof
	// that the client owns the uid it claims. False (the default) refuses
	// every bind with the error code token_required until signed bind tokens
	// exist.
	InsecureBind bool
	// Now returns the current time for message dates; nil means time.Now.
	Now func() time.Time
	// Location is the time zone of message dates; nil means time.Local.
	Location *time.Location
	// Timeout bounds each API call; zero (or negative) means 5s.
	Timeout time.Duration
}

// Handler is the chat's worker.Handler. It is safe for concurrent use.
type Handler struct {
	insecureBind bool
	now          func() time.Time
	loc          *time.Location
	timeout      time.Duration
	api          worker.API
	log          *slog.Logger
}

var _ worker.Handler = (*Handler)(nil)

// New returns a Handler that reaches clients through api and logs to log
// (nil discards logs). Zero fields of cfg take their documented defaults.
func New(cfg Config, api worker.API, log *slog.Logger) *Handler {
	h := &Handler{
		insecureBind: cfg.InsecureBind,
		now:          cfg.Now,
		loc:          cfg.Location,
		timeout:      cfg.Timeout,
		api:          api,
		log:          log,
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.loc == nil {
		h.loc = time.Local
	}
	if h.timeout <= 0 {
		h.timeout = defaultTimeout
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

// OnConnect sends the new connection its client_id in an "init" frame; the
// seed's clients answer with a bind.
func (h *Handler) OnConnect(ctx context.Context, c *worker.Client) {
	h.reply(ctx, c, initFrame{Type: typeInit, ClientID: c.ID})
}

// OnWebSocketConnect does nothing yet; signed bind tokens may come from the
// handshake later.
func (h *Handler) OnWebSocketConnect(ctx context.Context, c *worker.Client, r *worker.Request) {}

// OnMessage handles one client frame. A frame the Handler refuses gets an
// error frame in reply; the connection stays open.
func (h *Handler) OnMessage(ctx context.Context, c *worker.Client, m worker.Message) {
	ref, err := h.dispatch(ctx, c, m)
	if err == nil {
		return
	}
	if err.err != nil {
		h.log.WarnContext(ctx, "chat request failed",
			"client_id", c.ID, "uid", c.UID, "code", err.code, "err", err.err)
	} else {
		h.log.DebugContext(ctx, "chat request refused",
			"client_id", c.ID, "uid", c.UID, "code", err.code)
	}
	h.reply(ctx, c, errorFrame{Type: typeError, Code: err.code, Message: err.message, Ref: ref})
}

// OnClose does nothing: the gateway removes the connection's directory
// entries itself.
func (h *Handler) OnClose(ctx context.Context, c *worker.Client) {}

// dispatch decodes a frame and runs its request. It returns the request's
// type, when known, and the error to report to the client, if any.
func (h *Handler) dispatch(ctx context.Context, c *worker.Client, m worker.Message) (string, *frameError) {
	if m.Binary {
		return "", newFrameError(codeBinaryFrame, "binary frames are not supported; send JSON text frames")
	}
	req, err := parseRequest(m.Data)
	if err != nil {
		return "", err
	}
	switch req.typ {
	case typeBind:
		return req.typ, h.bind(ctx, c, req)
	case typeSay:
		return req.typ, h.say(ctx, c, req)
	default:
		return req.typ, newFrameError(codeUnknownType, `unknown message type; known types are "bind" and "say"`)
	}
}

// bind handles {"type":"bind","client_id":"...","frontId":"85"}: it binds the
// connection to uid frontId and acknowledges with a "bound" frame.
func (h *Handler) bind(ctx context.Context, c *worker.Client, req request) *frameError {
	if !h.insecureBind {
		return newFrameError(codeTokenRequired, "signed bind tokens come in a later release; "+
			"run with -insecure-bind to accept the seed's token-less bind")
	}
	b, ferr := decodeBind(req)
	if ferr != nil {
		return ferr
	}
	if b.hasClientID && b.clientID != c.ID {
		return newFrameError(codeClientIDMismatch, "client_id is not the client_id of this connection")
	}
	callCtx, cancel := context.WithTimeout(ctx, h.timeout)
	err := h.api.BindUID(callCtx, c.ID, b.frontID)
	cancel()
	if err != nil {
		if errors.Is(err, worker.ErrInvalidArgument) {
			return &frameError{code: codeInvalidField, message: `field "frontId" is not a valid uid`, err: err}
		}
		return &frameError{code: codeUnavailable, message: "the bind could not be completed; try again", err: err}
	}
	h.reply(ctx, c, boundFrame{Type: typeBound, ClientID: c.ID, FrontID: b.frontID})
	return nil
}

// say handles {"type":"say","frontId":"85","toId":"86","data":"..."}: it
// delivers a "text" frame to every connection of toId, then a "save" frame to
// every connection of the sender's uid telling whether anyone got it.
func (h *Handler) say(ctx context.Context, c *worker.Client, req request) *frameError {
	if c.UID == "" {
		return newFrameError(codeNotBound, "bind this connection to a uid before sending messages")
	}
	s, ferr := decodeSay(req)
	if ferr != nil {
		return ferr
	}
	if s.frontID != c.UID {
		return newFrameError(codeForbidden, "frontId must be the uid this connection is bound to")
	}
	msg := textFrame{
		Type:    typeText,
		ID:      c.ID,
		FrontID: s.frontID,
		ToID:    s.toID,
		Date:    h.now().In(h.loc).Format(dateLayout),
		Data:    escapeText(s.data),
		Raw:     s.data,
	}
	text, err := encodeFrame(msg)
	if err != nil { // cannot happen: every field is a string
		return &frameError{code: codeUnavailable, message: "the message could not be encoded", err: err}
	}
	callCtx, cancel := context.WithTimeout(ctx, h.timeout)
	delivered, err := h.api.SendToUID(callCtx, []string{s.toID}, text, false)
	cancel()
	if err != nil {
		return &frameError{code: codeUnavailable, message: "the message could not be delivered; try again",
			err: fmt.Errorf("deliver to uid %s: %w", s.toID, err)}
	}

	isRead := 0
	if delivered > 0 {
		isRead = 1
	}
	msg.Type, msg.IsRead = typeSave, &isRead
	save, err := encodeFrame(msg)
	if err != nil {
		h.log.ErrorContext(ctx, "encode save frame", "client_id", c.ID, "uid", c.UID, "err", err)
		return nil
	}
	callCtx, cancel = context.WithTimeout(ctx, h.timeout)
	_, err = h.api.SendToUID(callCtx, []string{c.UID}, save, false)
	cancel()
	if err != nil {
		// The message was delivered; an error frame would tell the sender
		// otherwise. The sender's clients learn nothing, as in the seed when
		// a send fails.
		h.log.WarnContext(ctx, "send save frame to sender", "client_id", c.ID, "uid", c.UID, "err", err)
	}
	return nil
}

// reply sends one frame to the connection c and logs a failure.
func (h *Handler) reply(ctx context.Context, c *worker.Client, v any) {
	data, err := encodeFrame(v)
	if err != nil {
		h.log.ErrorContext(ctx, "encode reply", "client_id", c.ID, "uid", c.UID, "err", err)
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, h.timeout)
	err = h.api.SendToClient(callCtx, c.ID, data, false)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, worker.ErrNotFound):
		// The client left while its event was handled; nothing to do.
		h.log.DebugContext(ctx, "reply to departed client", "client_id", c.ID, "uid", c.UID, "err", err)
	default:
		h.log.WarnContext(ctx, "reply to client", "client_id", c.ID, "uid", c.UID, "err", err)
	}
}
