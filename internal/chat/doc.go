// Package chat is the seed tutorial's one-to-one chat as a worker.Handler,
// with the seed's flaws fixed: every message is stored before it is
// delivered, history is per conversation, read state lives on the server.
// The seed's browser clients keep working unchanged.
//
// A Handler holds no per-connection state and is safe for concurrent use;
// everything it knows about a connection comes from the worker.Client of the
// event. Messages are written through a store.Batcher (concurrent says share
// one round trip); deliveries are recorded in the background. Bad input
// never closes the connection: the client gets an error frame and may go on.
// Start with New; Close when the worker has stopped.
//
// # Protocol
//
// Client to server (JSON text frames, keys are case-sensitive):
//
//	{"type":"bind","client_id":"<own client_id, optional>","frontId":"85"}
//	{"type":"say","frontId":"85","toId":"86","data":"hello","cmid":"<optional client message id>"}
//	{"type":"history","toId":"86","limit":10,"before":42}   (or "after":42)
//	{"type":"read","toId":"86","upTo":42}
//	{"type":"profile","toId":"86"}
//
// Server to client:
//
//	{"type":"init","client_id":"..."}                                     on connect
//	{"type":"bound","client_id":"...","frontId":"85","unread":{"86":3}}   after a bind
//	{"type":"text","id":"<sender client_id>","frontId":"85","toId":"86","date":"2006-01-02 15:04:05","data":"<escaped>","raw":"<text>","msg_id":42}
//	{"type":"save",...same fields...,"is_read":1,"cmid":"..."}            to every connection of the sender
//	{"type":"history","toId":"86","messages":[...oldest first...],"more":true}
//	{"type":"receipt","frontId":"85","toId":"86","upTo":42}               to both uids
//	{"type":"profile","self":{...},"peer":{...}}
//	{"type":"error","code":"...","message":"...","ref":"<request type>","cmid":"..."}
//
// The uid fields frontId and toId accept a JSON string or a JSON integer;
// integers are normalised to their decimal string. data is PHP's
// nl2br(htmlspecialchars($text)) of the text, as the seed's clients insert it
// as HTML; raw carries the text itself for clients that render text safely.
// A say retried with the same cmid is stored once, delivered once and gets
// the same save; a store failure yields error code store_failed naming the
// cmid, and no save.
package chat
