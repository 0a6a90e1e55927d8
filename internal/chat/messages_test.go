package chat

import (
	"encoding/json"
	"testing"
)

func TestParseUID(t *testing.T) {
	tests := []struct {
		raw    string
		want   string
		wantOK bool
	}{
		{`"85"`, "85", true},
		{`"user-a"`, "user-a", true},
		{`"用户"`, "用户", true},
		{`""`, "", true}, // empty: the caller reports missing_field
		{`"0"`, "0", true},
		{`85`, "85", true},
		{`0`, "0", true},
		{`-7`, "-7", true},
		{`-0`, "0", true},
		{`9223372036854775807`, "9223372036854775807", true},
		{`9223372036854775808`, "", false},
		{`85.0`, "", false},
		{`8.5e1`, "", false},
		{`1E2`, "", false},
		{`085`, "", false},
		{`true`, "", false},
		{`null`, "", false},
		{`{}`, "", false},
		{`["85"]`, "", false},
		{`"unterminated`, "", false},
		{``, "", false},
	}
	for _, tt := range tests {
		got, ok := parseUID(json.RawMessage(tt.raw))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseUID(%s) = %q, %v; want %q, %v", tt.raw, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		in       string
		wantType string
		wantCode string
	}{
		{`{"type":"say"}`, "say", ""},
		{` {"type" : "bind" } `, "bind", ""},
		{`{"type":"say","type":"bind"}`, "bind", ""}, // last wins, as in PHP
		{``, "", codeInvalidJSON},
		{`   `, "", codeInvalidJSON},
		{`hello`, "", codeInvalidJSON},
		{`null`, "", codeInvalidJSON},
		{`[]`, "", codeInvalidJSON},
		{`[{"type":"say"}]`, "", codeInvalidJSON},
		{`"say"`, "", codeInvalidJSON},
		{`42`, "", codeInvalidJSON},
		{`{"type":"say"`, "", codeInvalidJSON},
		{`{"type":"say"}{}`, "", codeInvalidJSON},
		{`{"type":"say"} x`, "", codeInvalidJSON},
		{`{}`, "", codeMissingType},
		{`{"type":""}`, "", codeMissingType},
		{`{"type":null}`, "", codeMissingType},
		{`{"Type":"say"}`, "", codeMissingType}, // keys are case-sensitive
		{`{"type":5}`, "", codeInvalidField},
		{`{"type":["say"]}`, "", codeInvalidField},
	}
	for _, tt := range tests {
		req, err := parseRequest([]byte(tt.in))
		code := ""
		if err != nil {
			code = err.code
		}
		if code != tt.wantCode || req.typ != tt.wantType {
			t.Errorf("parseRequest(%q) = type %q, code %q; want type %q, code %q", tt.in, req.typ, code, tt.wantType, tt.wantCode)
		}
	}
}

func TestEncodeFrame(t *testing.T) {
	got, err := EncodeFrame(textFrame{Type: "text", Data: "<b>&\u2028", Raw: "你好", MsgID: 7})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"text","id":"","frontId":"","toId":"","date":"","data":"<b>&\u2028","raw":"你好","msg_id":7}`
	if string(got) != want {
		t.Errorf("EncodeFrame = %s, want %s", got, want)
	}
	// A save frame carries is_read, and cmid when there is one.
	isRead := 0
	got, err = EncodeFrame(textFrame{Type: "save", MsgID: 7, IsRead: &isRead, CMID: "<c>"})
	if err != nil {
		t.Fatal(err)
	}
	want = `{"type":"save","id":"","frontId":"","toId":"","date":"","data":"","raw":"","msg_id":7,"is_read":0,"cmid":"<c>"}`
	if string(got) != want {
		t.Errorf("EncodeFrame = %s, want %s", got, want)
	}
}
