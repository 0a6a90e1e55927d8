package worker

import (
	"context"
	"encoding/json"
	"net/http"
)

// Handler is the business logic a worker runs for client events. The worker
// calls a Handler's methods for one client strictly in the order the client's
// events happened, never two at once for the same client; different clients
// are handled concurrently. A Handler reaches clients through the API it was
// built with.
type Handler interface {
	// OnConnect runs when a client has connected.
	OnConnect(ctx context.Context, c *Client)
	// OnWebSocketConnect runs right after OnConnect with the WebSocket
	// handshake request.
	OnWebSocketConnect(ctx context.Context, c *Client, r *Request)
	// OnMessage runs for every frame the client sends.
	OnMessage(ctx context.Context, c *Client, m Message)
	// OnClose runs when the connection is gone; c.UID is the uid it had,
	// c.CloseCode how it ended, and c.GatewayLost says whether the
	// gateway died (the worker then reports the close, once the register
	// dropped the gateway).
	OnClose(ctx context.Context, c *Client)
}

// Client describes the connection an event is about (GatewayWorker's
// $_SERVER).
type Client struct {
	// ID is the connection's client_id.
	ID string
	// UID is the uid the connection was bound to when the event happened, ""
	// when none.
	UID string
	// RemoteAddress is the client's host:port as the gateway saw it.
	RemoteAddress string
	// GatewayAddress is the gateway's public host:port the client reached.
	GatewayAddress string
	// Session is the connection's session (a JSON object, nil when empty)
	// when the event happened; change it with API.SetSession or
	// API.UpdateSession.
	Session json.RawMessage
	// CloseCode is, in OnClose, the connection's WebSocket close status
	// (1006 when it dropped without a close handshake).
	CloseCode int
	// GatewayLost is set in OnClose when the connection's gateway died: the
	// worker reports the close, since the gateway cannot.
	GatewayLost bool
}

// Request is the WebSocket handshake request of a connection.
type Request struct {
	// Path and Query are taken from the request URI (Query without "?").
	Path  string
	Query string
	// Header holds the request headers, Cookie included.
	Header http.Header
}

// Cookies parses the request's Cookie headers.
func (r *Request) Cookies() []*http.Cookie {
	return (&http.Request{Header: r.Header}).Cookies()
}

// Message is one frame a client sent.
type Message struct {
	Data []byte
	// Binary is true for a binary frame, false for a text frame.
	Binary bool
}
