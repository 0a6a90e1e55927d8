// Package chat is the seed tutorial's one-to-one chat as a worker.Handler: it
// greets each connection with its client_id, binds connections to uids and
// relays text messages between uids, speaking the seed's JSON text frames so
// that the seed's browser clients keep working unchanged.
//
// A Handler holds no per-connection state and is safe for concurrent use;
// everything it knows about a connection comes from the worker.Client of the
// event. Every reply and delivery goes through the worker.API it was built
// with, each call bounded by Config.Timeout. Bad input never closes the
// connection: the client gets an error frame and may go on. Start with New.
//
// # Protocol
//
// Client to server (JSON text frames, keys are case-sensitive):
//
//	{"type":"bind","client_id":"<own client_id, optional>","frontId":"85"}
//	{"type":"say","frontId":"85","toId":"86","data":"hello"}
//
// Server to client:
//
//	{"type":"init","client_id":"..."}                 on connect
//	{"type":"bound","client_id":"...","frontId":"85"} after a bind
//	{"type":"text","id":"<sender client_id>","frontId":"85","toId":"86","date":"2006-01-02 15:04:05","data":"<escaped>","raw":"<text>"}
//	{"type":"save",...same fields...,"is_read":1}     to every connection of the sender
//	{"type":"error","code":"...","message":"...","ref":"<request type>"}
//
// The uid fields frontId and toId accept a JSON string or a JSON integer;
// integers are normalised to their decimal string. data is PHP's
// nl2br(htmlspecialchars($text)) of the text, as the seed's clients insert it
// as HTML; raw carries the text itself for clients that render text safely.
package chat
