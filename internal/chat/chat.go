package chat

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/gatewire/gatewire/internal/bindtoken"
	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// defaultTimeout bounds each API call when Config.Timeout is zero.
const defaultTimeout = 5 * time.Second

// defaultRetrySettle is Config.RetrySettle's default: far longer than a
// say takes to deliver and record its delivery, and shorter than clients
// wait for a save before they resend.
const defaultRetrySettle = 2 * time.Second

// DefaultSaveLinger is the workers' default Config.SaveLinger: at 2,200
// say/s over two workers it cost the whole cluster 0.31 ms of CPU per say
// (p99 12 ms) against 0.51-0.53 ms with none (p99 5-6 ms); README,
// Performance, has the measured curve.
const DefaultSaveLinger = 5 * time.Millisecond

// dateLayout is PHP's date('Y-m-d H:i:s').
const dateLayout = "2006-01-02 15:04:05"

// Config configures a Handler. The zero Config is valid and refuses
// token-less binds.
type Config struct {
	// Tokens verifies the signed bind tokens clients present, in the bind
	// request's "token" field or as ?token= in the WebSocket URL. Nil
	// refuses every bind that needs a token.
	Tokens *bindtoken.Verifier
	// InsecureBind accepts the seed's bind request without a token: any
	// client may claim any uid. A token a client does present is still
	// checked.
	InsecureBind bool
	// Location is the time zone of message dates; nil means time.Local.
	Location *time.Location
	// Timeout bounds each API call; zero (or negative) means 5s.
	Timeout time.Duration
	// RetrySettle is how long a stored message must have been stored
	// before a retry of its say, finding no record of its delivery, may
	// deliver it; zero (or negative) means 2s. Until then the first say
	// may still be delivering it, or may have delivered it with the record
	// still on its way (deliveries are recorded in batches, ~50 ms late),
	// so a younger retry only gets the save, with is_read 0 unless the
	// delivery is known. Without it a sender that reconnects to another
	// worker and resends at once could make the peer get the text twice.
	RetrySettle time.Duration
	// SaveLinger is how long, under steady traffic, a say's write waits
	// for others to share its commit (store.Batcher's linger): longer
	// costs the database less per say and the say more latency. Zero (or
	// negative) means no wait: a batch is what queued during the previous
	// write. Workers default to DefaultSaveLinger.
	SaveLinger time.Duration
	// Extension, when set, handles the request types the chat does not
	// know (the customer-service desk's "desk.*" requests) and hears of
	// every close.
	Extension Extension
}

// Extension adds request types to a Handler. The Handler decodes a frame
// as a JSON object with a "type" first; a type the chat does not know goes
// to the Extension if it handles it, else it gets the unknown_type error.
type Extension interface {
	// HandlesType reports whether the extension handles requests of type
	// typ.
	HandlesType(typ string) bool
	// OnRequest handles one such request: data is the whole frame. The
	// extension answers the client itself, errors included.
	OnRequest(ctx context.Context, c *worker.Client, typ string, data []byte)
	// OnClose runs for every closed connection, after the chat's.
	OnClose(ctx context.Context, c *worker.Client)
}

// Handler is the chat's worker.Handler. It is safe for concurrent use.
type Handler struct {
	insecureBind bool
	tokens       *bindtoken.Verifier
	loc          *time.Location
	timeout      time.Duration
	retrySettle  time.Duration
	api          worker.API
	store        store.Store
	saver        *store.Batcher
	marker       *store.Marker
	ext          Extension
	log          *slog.Logger
	closeOnce    sync.Once
}

var _ worker.Handler = (*Handler)(nil)

// New returns a Handler that keeps messages in st, reaches clients through
// api and logs to log (nil discards logs). Zero fields of cfg take their
// documented defaults. Close stops its background writers.
func New(cfg Config, api worker.API, st store.Store, log *slog.Logger) *Handler {
	h := &Handler{
		insecureBind: cfg.InsecureBind,
		tokens:       cfg.Tokens,
		loc:          cfg.Location,
		timeout:      cfg.Timeout,
		retrySettle:  cfg.RetrySettle,
		api:          api,
		store:        st,
		ext:          cfg.Extension,
		log:          log,
	}
	if h.loc == nil {
		h.loc = time.Local
	}
	if h.timeout <= 0 {
		h.timeout = defaultTimeout
	}
	if h.retrySettle <= 0 {
		h.retrySettle = defaultRetrySettle
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.saver = store.NewBatcher(st, 0, cfg.SaveLinger)
	h.marker = store.NewMarker(st, h.log)
	return h
}

// Close stops the Handler's background writers after what they hold is
// written. Call it once no event is being handled any more; it is
// idempotent.
func (h *Handler) Close() {
	h.closeOnce.Do(func() {
		h.saver.Close()
		h.marker.Close()
	})
}

// OnConnect sends the new connection its client_id in an "init" frame; the
// seed's clients answer with a bind.
func (h *Handler) OnConnect(ctx context.Context, c *worker.Client) {
	h.reply(ctx, c, initFrame{Type: typeInit, ClientID: c.ID})
}

// OnWebSocketConnect binds the connection when its URL carries a bind
// token (?token=...): the client is then bound before its first frame, and
// its bind request needs no token. A bad token gets an error frame; the
// connection stays open and unbound.
func (h *Handler) OnWebSocketConnect(ctx context.Context, c *worker.Client, r *worker.Request) {
	q, err := url.ParseQuery(r.Query)
	token := q.Get(fieldToken)
	if err != nil || token == "" {
		return
	}
	uid, ferr := h.verify(token, "")
	if ferr == nil {
		ferr = h.bindUID(ctx, c, uid)
	}
	if ferr != nil {
		h.refuse(ctx, c, typeBind, ferr)
	}
}

// OnMessage handles one client frame. A frame the Handler refuses gets an
// error frame in reply; the connection stays open.
func (h *Handler) OnMessage(ctx context.Context, c *worker.Client, m worker.Message) {
	ref, err := h.dispatch(ctx, c, m)
	if err != nil {
		h.refuse(ctx, c, ref, err)
	}
}

// refuse logs err and sends it to the client as an error frame about a
// request of type ref.
func (h *Handler) refuse(ctx context.Context, c *worker.Client, ref string, err *frameError) {
	if err.err != nil {
		h.log.WarnContext(ctx, "chat request failed",
			"client_id", c.ID, "uid", c.UID, "code", err.code, "err", err.err)
	} else {
		h.log.DebugContext(ctx, "chat request refused",
			"client_id", c.ID, "uid", c.UID, "code", err.code)
	}
	h.reply(ctx, c, errorFrame{Type: typeError, Code: err.code, Message: err.message, Ref: ref, CMID: err.cmid})
}

// OnClose does nothing but tell the Extension, if any: the gateway removes
// the connection's directory entries itself.
func (h *Handler) OnClose(ctx context.Context, c *worker.Client) {
	if h.ext != nil {
		h.ext.OnClose(ctx, c)
	}
}

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
	case typeHistory:
		return req.typ, h.history(ctx, c, req)
	case typeRead:
		return req.typ, h.read(ctx, c, req)
	case typeProfile:
		return req.typ, h.profile(ctx, c, req)
	default:
		if h.ext != nil && h.ext.HandlesType(req.typ) {
			h.ext.OnRequest(ctx, c, req.typ, m.Data)
			return req.typ, nil
		}
		return req.typ, newFrameError(codeUnknownType, `unknown message type; known types are "bind", "say", "history", "read" and "profile"`)
	}
}

// bind handles {"type":"bind","client_id":"...","frontId":"85"}: it binds the
// connection to uid frontId and acknowledges with a "bound" frame.
//
// The bind needs a token signed for frontId, unless the connection is
// already bound to frontId (by its URL's token) or the Handler accepts
// token-less binds.
func (h *Handler) bind(ctx context.Context, c *worker.Client, req request) *frameError {
	b, ferr := decodeBind(req)
	if ferr != nil {
		return ferr
	}
	if b.hasClientID && b.clientID != c.ID {
		return newFrameError(codeClientIDMismatch, "client_id is not the client_id of this connection")
	}
	if b.token != "" || !(h.insecureBind || c.UID == b.frontID) {
		if _, ferr := h.verify(b.token, b.frontID); ferr != nil {
			return ferr
		}
	}
	return h.bindUID(ctx, c, b.frontID)
}

// verify checks a bind token and returns its uid, which must be want
// unless want is empty.
func (h *Handler) verify(token, want string) (string, *frameError) {
	if h.tokens == nil {
		if h.insecureBind {
			return "", newFrameError(codeTokenInvalid, "this server verifies no bind tokens (no -jwt-secret); bind without one")
		}
		return "", newFrameError(codeTokenRequired, "this server accepts no bind tokens (no -jwt-secret) and no token-less binds")
	}
	uid, err := h.tokens.Verify(token)
	switch {
	case errors.Is(err, bindtoken.ErrMissing):
		return "", newFrameError(codeTokenRequired, `field "token" is required: a bind token the application signed for this uid (servers run with -insecure-bind accept the seed's token-less bind)`)
	case errors.Is(err, bindtoken.ErrExpired):
		return "", newFrameError(codeTokenExpired, "the bind token has expired; get a new one")
	case err != nil:
		return "", newFrameError(codeTokenInvalid, "the bind token is not valid")
	case want != "" && uid != want:
		return "", newFrameError(codeTokenMismatch, `the bind token was issued for another uid than "frontId"`)
	}
	return uid, nil
}

// bindUID binds the connection to uid and acknowledges with a "bound" frame
// carrying the unread count per peer.
func (h *Handler) bindUID(ctx context.Context, c *worker.Client, uid string) *frameError {
	callCtx, cancel := context.WithTimeout(ctx, h.timeout)
	err := h.api.BindUID(callCtx, c.ID, uid)
	cancel()
	if err != nil {
		if errors.Is(err, worker.ErrInvalidArgument) {
			return &frameError{code: codeInvalidField, message: `field "frontId" is not a valid uid`, err: err}
		}
		return &frameError{code: codeUnavailable, message: "the bind could not be completed; try again", err: err}
	}
	unread := map[string]int{}
	callCtx, cancel = context.WithTimeout(ctx, h.timeout)
	counts, err := h.store.UnreadCounts(callCtx, uid)
	cancel()
	if err != nil {
		// The bind holds; the counts are a convenience the client can ask
		// for again with history.
		h.log.WarnContext(ctx, "load unread counts", "client_id", c.ID, "uid", uid, "err", err)
	} else if counts != nil {
		unread = counts
	}
	h.reply(ctx, c, boundFrame{Type: typeBound, ClientID: c.ID, FrontID: uid, Unread: unread})
	return nil
}

// reply sends one frame to the connection c and logs a failure.
func (h *Handler) reply(ctx context.Context, c *worker.Client, v any) {
	data, err := EncodeFrame(v)
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
