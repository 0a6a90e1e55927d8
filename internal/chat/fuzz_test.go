package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/gatewire/gatewire/internal/bindtoken"
	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// TestMain fails the package when a test leaves goroutines behind (the
// Handlers' batchers, the stores' pools): every harness must be closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// documentedCodes are the error codes of the README's table (chat protocol
// section): the only codes an error frame may carry.
var documentedCodes = []string{
	"invalid_json", "binary_frame", "missing_type", "unknown_type", "missing_field", "invalid_field",
	"client_id_mismatch", "token_required", "token_expired", "token_invalid", "token_mismatch",
	"not_bound", "forbidden", "store_failed", "unavailable",
}

// readmePath is the README the seed corpus and the code table come from.
const readmePath = "../../README.md"

// chatSection returns the README's "Chat protocol" section, or "" when the
// README cannot be read.
func chatSection(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		tb.Logf("README not read (%v): the seed corpus is the built-in one only", err)
		return ""
	}
	s := string(b)
	start := strings.Index(s, "## Chat protocol")
	if start < 0 {
		return ""
	}
	s = s[start:]
	if end := strings.Index(s[3:], "\n## "); end >= 0 {
		s = s[:end+3]
	}
	return s
}

// TestDocumentedCodesInREADME: every code the fuzz tests accept is in the
// README's table, and every code errors.go defines is one of them.
func TestDocumentedCodesInREADME(t *testing.T) {
	section := chatSection(t)
	if section == "" {
		t.Skip("no README chat protocol section")
	}
	var table []string
	for _, line := range strings.Split(section, "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 2 && strings.HasPrefix(line, "| `") {
			for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(cells[1], -1) {
				table = append(table, m[1])
			}
		}
	}
	for _, code := range documentedCodes {
		if !slices.Contains(table, code) {
			t.Errorf("code %q is not in the README's error code table %v", code, table)
		}
	}
	for _, code := range []string{codeInvalidJSON, codeBinaryFrame, codeMissingType, codeUnknownType, codeMissingField,
		codeInvalidField, codeClientIDMismatch, codeNotBound, codeForbidden, codeTokenRequired, codeTokenInvalid,
		codeTokenExpired, codeTokenMismatch, codeUnavailable, codeStoreFailed} {
		if !slices.Contains(documentedCodes, code) {
			t.Errorf("errors.go defines %q, which the README does not document", code)
		}
	}
}

// readmeClientID is the client_id of the README's examples; the fuzzed
// connection has it, so that the README's bind frames bind.
const readmeClientID = "6d6dd722956562950000000000000001"

// readmeFrames returns the JSON frames of the README's chat protocol
// section: the lines of its json blocks and the inline `{"type":...}`
// examples.
func readmeFrames(tb testing.TB) []string {
	tb.Helper()
	section := chatSection(tb)
	var frames []string
	inJSON := false
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "```json"):
			inJSON = true
		case strings.HasPrefix(line, "```"):
			inJSON = false
		case inJSON && strings.HasPrefix(line, "{"):
			frames = append(frames, line)
		}
	}
	for _, m := range regexp.MustCompile("`(\\{\"type\":[^`]*\\})`").FindAllStringSubmatch(section, -1) {
		frames = append(frames, m[1])
	}
	return frames
}

// seedFrames is the fuzz tests' seed corpus: the README's frames, the same
// frames built in (should the README move), and hostile variants of them.
func seedFrames(tb testing.TB) []string {
	tb.Helper()
	good, err := bindtoken.Sign(testSecret, "85", 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	frames := readmeFrames(tb)
	frames = append(frames,
		// The protocol, as the README shows it.
		`{"type":"init","client_id":"`+readmeClientID+`"}`,
		`{"type":"bind","client_id":"`+readmeClientID+`","frontId":"85","token":"eyJhbGciOiJIUzI1NiIs..."}`,
		`{"type":"bind","client_id":"`+readmeClientID+`","frontId":"85"}`,
		`{"type":"bind","client_id":"`+readmeClientID+`","frontId":"85","token":"`+good+`"}`,
		`{"type":"bind","frontId":"86","token":"`+good+`"}`,
		`{"type":"say","frontId":"85","toId":"86","data":"hi <b>'you'</b>\nbye","cmid":"c-17"}`,
		`{"type":"say","frontId":"85","toId":"85","data":"note to self"}`,
		`{"type":"history","toId":"86","limit":10,"before":42}`,
		`{"type":"history","toId":"86","after":1,"limit":50}`,
		`{"type":"read","toId":"86","upTo":42}`,
		`{"type":"profile","toId":"86"}`,
		`{"type":"error","code":"forbidden","message":"frontId must be the uid this connection is bound to","ref":"say"}`,
		// Hostile variants.
		``, ` `, `null`, `[]`, `{}`, `"bind"`, `{"type":"bind"`, `{"type":"bind"}}`,
		"\xff\xfe", `{"type":"bind","frontId":"8`+"\xff"+`5"}`, `{"type":"say","frontId":"85","toId":"86","data":"`+"\xe4\xb8"+`"}`,
		`{"type":"say","frontId":"85","toId":"86","data":"\ud800"}`,
		"\x00", `{"type":"bind","frontId":"85"}`+"\x00", `{"type":"say","frontId":"85","toId":"86","data":"a`+"\x00"+`b"}`,
		`{"type":"say","frontId":"85","toId":"86","data":"a\u0000b","cmid":"n"}`, `{"type":"bind\u0000"}`,
		strings.Repeat("[", 10001)+strings.Repeat("]", 10001),
		`{"type":"bind","frontId":"85","x":`+strings.Repeat("[", 10001)+strings.Repeat("]", 10001)+`}`,
		`{"type":5}`, `{"type":["bind"]}`, `{"type":null}`, `{"type":""}`, `{"Type":"bind"}`, `{"type":"BIND"}`,
		`{"type":"bind","frontId":85}`, `{"type":"bind","frontId":-0}`, `{"type":"bind","frontId":1e2}`,
		`{"type":"bind","frontId":99999999999999999999}`, `{"type":"bind","frontId":true}`, `{"type":"bind","frontId":null}`,
		`{"type":"bind","frontId":"85","client_id":1}`, `{"type":"bind","frontId":"85","token":123}`,
		`{"type":"bind","frontId":"85","client_id":"someone-else"}`,
		`{"type":"bind","frontId":"`+strings.Repeat("u", 300)+`"}`,
		`{"type":"say","frontId":"86","toId":"85","data":"forged"}`, `{"type":"say","frontId":85,"toId":86,"data":42}`,
		`{"type":"say","frontId":"85","toId":"86","data":"x","cmid":`+`"`+strings.Repeat("c", 65)+`"}`,
		`{"type":"say","frontId":"85","toId":"86","data":"x","cmid":7}`,
		`{"type":"history","toId":"86","limit":"10"}`, `{"type":"history","toId":"86","limit":51}`,
		`{"type":"history","toId":"86","before":-1}`, `{"type":"history","toId":"86","before":1,"after":1}`,
		`{"type":"read","toId":"86","upTo":"3"}`, `{"type":"read","toId":"86","upTo":0}`,
		`{"type":"read","toId":"86","upTo":9223372036854775807}`, `{"type":"read","toId":"86","upTo":9223372036854775808}`,
		`{"type":"profile","toId":"a/b c"}`, `{"type":"profile"}`,
		`{"type":"say","type":"bind","frontId":"85"}`,
	)
	return frames
}

// FuzzParseRequest: parseRequest and every decoder, run on what it
// returns (refused or not), never panic; every error carries a documented
// code that fits the step and a message; what is accepted is well-formed.
func FuzzParseRequest(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, ferr := parseRequest(data)
		if ferr != nil {
			checkFrameError(t, "parseRequest", ferr, codeInvalidJSON, codeMissingType, codeInvalidField)
			if req.typ != "" {
				t.Fatalf("parseRequest(%q) refused with %v but set type %q", data, ferr, req.typ)
			}
			if ferr.code == codeInvalidJSON && req.fields != nil {
				t.Fatalf("parseRequest(%q): invalid_json with fields %v", data, req.fields)
			}
		} else {
			trimmed := bytes.TrimLeft(data, " \t\r\n")
			if !json.Valid(data) || !utf8.Valid(data) || len(trimmed) == 0 || trimmed[0] != '{' {
				t.Fatalf("parseRequest accepted %q, which is not a UTF-8 JSON object", data)
			}
			if req.typ == "" || !utf8.ValidString(req.typ) {
				t.Fatalf("parseRequest(%q) accepted type %q", data, req.typ)
			}
		}

		fieldCodes := []string{codeMissingField, codeInvalidField}
		b, ferr := decodeBind(req)
		if ferr != nil {
			checkFrameError(t, "decodeBind", ferr, fieldCodes...)
		} else if b.frontID == "" || !utf8.ValidString(b.frontID) || !utf8.ValidString(b.clientID) || !utf8.ValidString(b.token) {
			t.Fatalf("decodeBind(%q) accepted %+v", data, b)
		}
		s, ferr := decodeSay(req)
		if ferr != nil {
			checkFrameError(t, "decodeSay", ferr, fieldCodes...)
		} else if s.frontID == "" || s.toID == "" || len(s.cmid) > maxCMIDBytes || !utf8.ValidString(s.data) {
			t.Fatalf("decodeSay(%q) accepted %+v", data, s)
		}
		// The decoders of history, read and profile, on every field the
		// frame has and on the ones they read.
		names := []string{fieldToID, fieldFrontID, fieldLimit, fieldBefore, fieldAfter, fieldUpTo}
		for name := range req.fields {
			names = append(names, name)
		}
		for _, name := range names {
			if uid, ferr := req.uid(name); ferr != nil {
				checkFrameError(t, "uid("+name+")", ferr, fieldCodes...)
			} else if uid == "" || !utf8.ValidString(uid) {
				t.Fatalf("uid(%q) of %q accepted %q", name, data, uid)
			}
			if n, ferr := req.int(name); ferr != nil {
				checkFrameError(t, "int("+name+")", ferr, codeInvalidField)
			} else if n < 0 {
				t.Fatalf("int(%q) of %q accepted %d", name, data, n)
			}
		}
	})
}

// checkFrameError fails t unless err has one of codes, all documented, and
// a message.
func checkFrameError(t *testing.T, step string, err *frameError, codes ...string) {
	t.Helper()
	if !slices.Contains(documentedCodes, err.code) || !slices.Contains(codes, err.code) {
		t.Fatalf("%s: code %q (%s); want one of %v", step, err.code, err.message, codes)
	}
	if err.message == "" || err.Error() == "" || !utf8.ValidString(err.message) {
		t.Fatalf("%s: error %q without a message", step, err.code)
	}
}

// fuzzPeer is the client_id of the fuzzed connection's peer, bound to 86.
const fuzzPeer = "c-peer-86"

// FuzzOnMessageReplies feeds arbitrary frames, text or binary, to a bound
// (as 85) or unbound connection of a Handler with or without
// -insecure-bind. Nothing may panic; the asking connection always gets an
// answer; every frame sent is a UTF-8 JSON object with a type; an error is
// the only reply and carries a documented code (never store_failed or
// unavailable: nothing fails here) and the request's type as ref; no uid is
// bound without a valid token for it (unless -insecure-bind); nothing is
// sent on behalf of a uid the connection is not bound to. One Handler (and
// store) per mode serves every input, so that inputs stay cheap.
//
// (FuzzOnMessage in chat_test.go checks the routing of replies across
// connections on a fresh Handler per input.)
func FuzzOnMessageReplies(f *testing.F) {
	for _, s := range seedFrames(f) {
		for _, mode := range [][3]bool{{false, false, true}, {false, true, true}, {false, false, false}, {false, true, false}} {
			f.Add([]byte(s), mode[0], mode[1], mode[2])
		}
	}
	f.Add([]byte(`{"type":"bind","client_id":"`+readmeClientID+`","frontId":"85"}`), true, false, true)
	f.Add([]byte{0xff, 0x00, 0x81}, true, true, false)

	harnesses := map[bool]*harness{true: newHarness(f, true), false: newHarness(f, false)}
	for _, x := range harnesses {
		// Messages from 86 to 85 give history and read something to find.
		if _, err := x.db.SaveMessages(context.Background(), []store.NewMessage{
			{From: "86", To: "85", Text: "hi", Kind: store.KindText},
			{From: "86", To: "85", Text: "<b>you</b>", Kind: store.KindText},
		}); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, binary, bound, insecure bool) {
		x := harnesses[insecure]
		uid := ""
		if bound {
			uid = "85"
		}
		x.api.mu.Lock()
		x.api.conns = map[string]string{readmeClientID: uid, fuzzPeer: "86"}
		x.api.frames = map[string][]string{}
		x.api.uidSends, x.api.binds, x.api.problems = nil, nil, nil
		x.api.mu.Unlock()

		c := &worker.Client{ID: readmeClientID, UID: uid}
		x.h.OnMessage(x.ctx, c, worker.Message{Data: data, Binary: binary})

		x.api.mu.Lock()
		frames, binds, problems := x.api.frames, x.api.binds, x.api.problems
		uidSends := len(x.api.uidSends)
		x.api.mu.Unlock()
		if len(problems) != 0 {
			t.Fatalf("fake API: %v", problems)
		}
		checkReplies(t, x, data, binary, uid, insecure, frames, binds, uidSends)
	})
}

// checkReplies checks what one frame from a connection bound to uid (""
// when unbound) caused: frames per client_id, binds done, SendToUID calls.
func checkReplies(t *testing.T, x *harness, data []byte, binary bool, uid string, insecure bool,
	frames map[string][]string, binds []string, uidSends int) {
	t.Helper()
	// What the Handler should have understood of the frame.
	typ := ""
	var req request
	if !binary {
		var ferr *frameError
		if req, ferr = parseRequest(data); ferr == nil {
			typ = req.typ
		}
	}
	mine := frames[readmeClientID]
	if len(mine) == 0 {
		t.Fatalf("frame %q (binary %v, uid %q): no answer", data, binary, uid)
	}
	for id, fs := range frames {
		for _, frame := range fs {
			v := decodeFrame(t, id, frame)
			ftyp := rawString(v["type"])
			switch ftyp {
			case typeError:
				checkErrorReply(t, data, binary, uid, typ, frame, v, len(mine), len(frames), uidSends, len(binds))
			case typeBound:
				if id != readmeClientID || rawString(v["client_id"]) != readmeClientID || typ != typeBind || len(mine) != 1 {
					t.Fatalf("frame %q: bound frame %s to %s", data, frame, id)
				}
				checkBindAllowed(t, x, data, req, uid, insecure, rawString(v["frontId"]), binds)
			case typeText, typeSave:
				if uid == "" || typ != typeSay || rawString(v["frontId"]) != uid || rawString(v["id"]) != readmeClientID {
					t.Fatalf("frame %q from a connection bound to %q: %s to %s", data, uid, frame, id)
				}
			case typeReceipt:
				if uid == "" || typ != typeRead || rawString(v["frontId"]) != uid {
					t.Fatalf("frame %q from a connection bound to %q: %s to %s", data, uid, frame, id)
				}
			case typeHistory, typeProfile:
				if id != readmeClientID || uid == "" || typ != ftyp || len(mine) != 1 {
					t.Fatalf("frame %q from a connection bound to %q: %s to %s", data, uid, frame, id)
				}
			default:
				t.Fatalf("frame %q: %s got an unexpected frame %s", data, id, frame)
			}
		}
	}
	if uid == "" && uidSends != 0 {
		t.Fatalf("frame %q from an unbound connection made %d SendToUID calls", data, uidSends)
	}
	if len(binds) > 1 {
		t.Fatalf("frame %q made binds %v", data, binds)
	}
}

// checkErrorReply checks an error frame: the only frame the request caused,
// with a documented code, the request's type as ref, and a message.
func checkErrorReply(t *testing.T, data []byte, binary bool, uid, typ, frame string, v map[string]json.RawMessage,
	mine, clients, uidSends, binds int) {
	t.Helper()
	code := rawString(v["code"])
	if !slices.Contains(documentedCodes, code) || rawString(v["message"]) == "" {
		t.Fatalf("frame %q: error frame %s without a documented code and a message", data, frame)
	}
	if code == codeStoreFailed || code == codeUnavailable {
		t.Fatalf("frame %q (uid %q): error frame %s, but neither the store nor the API failed", data, uid, frame)
	}
	if mine != 1 || clients != 1 || uidSends != 0 || binds != 0 {
		t.Fatalf("frame %q: error frame %s came with other effects (%d frames to it, %d clients got frames, %d SendToUID, %d binds)",
			data, frame, mine, clients, uidSends, binds)
	}
	if ref := rawString(v["ref"]); ref != typ {
		t.Fatalf("frame %q: error frame %s has ref %q, want %q", data, frame, ref, typ)
	}
	switch {
	case binary && code != codeBinaryFrame:
		t.Fatalf("binary frame %q: %s, want binary_frame", data, frame)
	case !binary && code == codeBinaryFrame:
		t.Fatalf("text frame %q: %s", data, frame)
	case uid == "" && (typ == typeSay || typ == typeHistory || typ == typeRead || typ == typeProfile) && code != codeNotBound:
		t.Fatalf("frame %q from an unbound connection: %s, want not_bound", data, frame)
	}
}

// checkBindAllowed fails t unless a bind of the connection (bound to uid)
// to frontID was allowed: by a valid token for frontID in the request, by
// -insecure-bind without a token, or because the connection already was
// frontID's.
func checkBindAllowed(t *testing.T, x *harness, data []byte, req request, uid string, insecure bool, frontID string, binds []string) {
	t.Helper()
	if !slices.Equal(binds, []string{readmeClientID + "=" + frontID}) {
		t.Fatalf("frame %q: bound to %q, but the binds done are %v", data, frontID, binds)
	}
	tok := ""
	if raw, ok := req.field(fieldToken); ok {
		_ = json.Unmarshal(raw, &tok)
	}
	if tok != "" {
		if sub, err := x.h.tokens.Verify(tok); err != nil || sub != frontID {
			t.Fatalf("frame %q: bound to %q with token %q (sub %q, %v)", data, frontID, tok, sub, err)
		}
		return
	}
	if !insecure && uid != frontID {
		t.Fatalf("frame %q: bound to %q without a token (connection bound to %q, no -insecure-bind)", data, frontID, uid)
	}
}

// decodeFrame fails t unless frame is a UTF-8 JSON object with a non-empty
// string type.
func decodeFrame(t *testing.T, id, frame string) map[string]json.RawMessage {
	t.Helper()
	var v map[string]json.RawMessage
	if !utf8.ValidString(frame) || json.Unmarshal([]byte(frame), &v) != nil || v == nil || rawString(v["type"]) == "" {
		t.Fatalf("%s got %q, not a UTF-8 JSON object with a type", id, frame)
	}
	return v
}

// rawString decodes a JSON string; anything else is "".
func rawString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}
