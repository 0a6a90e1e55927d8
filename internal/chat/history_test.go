package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// historyReply is a decoded history frame.
type historyReply struct {
	Type     string        `json:"type"`
	ToID     string        `json:"toId"`
	Messages []historyItem `json:"messages"`
	More     bool          `json:"more"`
}

// history sends a history request on c and returns the decoded reply, whose
// members must be exactly those of the protocol.
func (x *harness) history(t *testing.T, c *worker.Client, frame string) historyReply {
	t.Helper()
	x.send(c, frame)
	got := x.api.received(c.ID)
	if len(got) != 1 {
		t.Fatalf("%s sent %s and received %q, want one history frame", c.ID, frame, got)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(got[0])))
	dec.DisallowUnknownFields()
	var r historyReply
	if err := dec.Decode(&r); err != nil || r.Type != "history" || r.Messages == nil {
		t.Fatalf("%s sent %s and received %s, want a history frame (%v)", c.ID, frame, got[0], err)
	}
	return r
}

func idsOf(r historyReply) []int64 {
	ids := make([]int64, len(r.Messages))
	for i, m := range r.Messages {
		ids[i] = m.MsgID
	}
	return ids
}

// seedHistory stores n messages between 85 and 86 (alternating direction,
// texts "m01"...), interleaved with messages of other conversations, among
// them the seed bug's 85→87. It returns the ids of the 85↔86 messages,
// oldest first.
func seedHistory(t *testing.T, x *harness, n int) []int64 {
	t.Helper()
	var msgs []store.NewMessage
	var mine []int
	for i := range n {
		// Other conversations of both parties, around every message.
		msgs = append(msgs,
			store.NewMessage{From: "85", To: "87", Text: fmt.Sprintf("85→87 %d", i), Kind: store.KindText},
			store.NewMessage{From: "87", To: "86", Text: fmt.Sprintf("87→86 %d", i), Kind: store.KindText},
		)
		from, to := "85", "86"
		if i%2 == 1 {
			from, to = to, from
		}
		mine = append(mine, len(msgs))
		msgs = append(msgs, store.NewMessage{From: from, To: to, Text: fmt.Sprintf("m%02d", i+1), Kind: store.KindText})
		msgs = append(msgs,
			store.NewMessage{From: "86", To: "88", Text: fmt.Sprintf("86→88 %d", i), Kind: store.KindText},
			store.NewMessage{From: "87", To: "85", Text: fmt.Sprintf("87→85 %d", i), Kind: store.KindText},
			store.NewMessage{From: "86", To: "86", Text: fmt.Sprintf("86→86 %d", i), Kind: store.KindText},
		)
	}
	saved, err := x.db.SaveMessages(context.Background(), msgs)
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	ids := make([]int64, len(mine))
	for i, j := range mine {
		ids[i] = saved[j].Message.ID
	}
	return ids
}

// checkItems fails unless r holds exactly the messages ids of 85↔86, each
// matching the store.
func checkItems(t *testing.T, x *harness, r historyReply, ids []int64) {
	t.Helper()
	if got := idsOf(r); !slices.Equal(got, ids) {
		t.Fatalf("history ids %v, want %v", got, ids)
	}
	for _, it := range r.Messages {
		m := x.stored(t, "85", "86", it.MsgID)
		isRead := 0
		if !m.ReadAt.IsZero() {
			isRead = 1
		}
		want := historyItem{MsgID: m.ID, FrontID: m.From, ToID: m.To, Date: dateOf(m), Data: escapeText(m.Text),
			Raw: m.Text, Kind: int(m.Kind), IsRead: isRead}
		if it != want {
			t.Errorf("history item %+v, want %+v", it, want)
		}
		if !(it.FrontID == "85" && it.ToID == "86") && !(it.FrontID == "86" && it.ToID == "85") {
			t.Errorf("history of 85↔86 holds %+v", it)
		}
	}
}

func TestHistoryExactFrame(t *testing.T) {
	x := newHarness(t, true)
	c := x.api.connect("c1", "85")
	saved, err := x.db.SaveMessages(context.Background(), []store.NewMessage{
		{From: "85", To: "86", Text: "a<b & \"c\"\n", Kind: store.KindText},
		{From: "85", To: "87", Text: "not here", Kind: store.KindText},
		{From: "86", To: "85", Text: "https://example.com/cat.png?a=1&b=2", Kind: store.KindImage},
	})
	if err != nil {
		t.Fatal(err)
	}
	m1, m2 := saved[0].Message, saved[2].Message
	x.send(c, `{"type":"history","toId":86}`)
	want := `{"type":"history","toId":"86","messages":[` +
		`{"msg_id":` + strconv.FormatInt(m1.ID, 10) + `,"frontId":"85","toId":"86","date":"` + dateOf(m1) +
		`","data":"a&lt;b &amp; &quot;c&quot;<br />\n","raw":"a<b & \"c\"\n","kind":1,"is_read":0},` +
		`{"msg_id":` + strconv.FormatInt(m2.ID, 10) + `,"frontId":"86","toId":"85","date":"` + dateOf(m2) +
		`","data":"https://example.com/cat.png?a=1&amp;b=2","raw":"https://example.com/cat.png?a=1&b=2","kind":2,"is_read":0}` +
		`],"more":false}`
	x.wantFrames(t, "c1", want)

	// An empty conversation has an empty list, not null.
	x.send(c, `{"type":"history","toId":"99"}`)
	x.wantFrames(t, "c1", `{"type":"history","toId":"99","messages":[],"more":false}`)
}

func TestHistoryPaging(t *testing.T) {
	x := newHarness(t, true)
	ids := seedHistory(t, x, 25)
	a := x.api.connect("ca", "85")
	b := x.api.connect("cb", "86")

	t.Run("newest 10 by default", func(t *testing.T) {
		for _, c := range []*worker.Client{a, b} {
			peer := "86"
			if c == b {
				peer = "85"
			}
			r := x.history(t, c, `{"type":"history","toId":"`+peer+`"}`)
			checkItems(t, x, r, ids[15:])
			if !r.More || r.ToID != peer {
				t.Errorf("%s: more %v toId %q, want more true, toId %s", c.ID, r.More, r.ToID, peer)
			}
		}
	})

	t.Run("before pages back without gaps or duplicates", func(t *testing.T) {
		for _, limit := range []int{0, 1, 5, 7, 10, 24, 25, 50} {
			var got []int64
			before := int64(0)
			for page := 0; ; page++ {
				frame := `{"type":"history","toId":"86"`
				if limit != 0 {
					frame += `,"limit":` + strconv.Itoa(limit)
				}
				if before != 0 {
					frame += `,"before":` + strconv.FormatInt(before, 10)
				}
				r := x.history(t, a, frame+`}`)
				n := limit
				if n == 0 {
					n = 10
				}
				end := len(ids) - len(got)
				want := ids[max(end-n, 0):end]
				checkItems(t, x, r, want)
				if wantMore := end-n > 0; r.More != wantMore {
					t.Errorf("limit %d page %d: more %v, want %v", limit, page, r.More, wantMore)
				}
				got = append(slices.Clone(idsOf(r)), got...)
				if !r.More || len(r.Messages) == 0 || page > 30 {
					break
				}
				before = r.Messages[0].MsgID
			}
			if !slices.Equal(got, ids) {
				t.Errorf("limit %d: paged ids %v, want %v", limit, got, ids)
			}
		}
	})

	t.Run("after catches up", func(t *testing.T) {
		r := x.history(t, a, `{"type":"history","toId":"86","after":`+strconv.FormatInt(ids[19], 10)+`}`)
		checkItems(t, x, r, ids[20:])
		if r.More {
			t.Errorf("more true, want false")
		}
		r = x.history(t, a, `{"type":"history","toId":"86","limit":3,"after":`+strconv.FormatInt(ids[4], 10)+`}`)
		checkItems(t, x, r, ids[5:8])
		if !r.More {
			t.Errorf("more false, want true")
		}
		r = x.history(t, a, `{"type":"history","toId":"86","limit":5,"after":`+strconv.FormatInt(ids[19], 10)+`}`)
		checkItems(t, x, r, ids[20:])
		if r.More {
			t.Errorf("exactly the rest: more true, want false")
		}
		r = x.history(t, a, `{"type":"history","toId":"86","after":`+strconv.FormatInt(ids[24], 10)+`}`)
		checkItems(t, x, r, []int64{})
		if r.More {
			t.Errorf("nothing newer: more true, want false")
		}
		// Forward paging from the first message.
		var got []int64
		after := ids[0]
		for page := 0; page < 10; page++ {
			r := x.history(t, b, `{"type":"history","toId":"85","after":`+strconv.FormatInt(after, 10)+`}`)
			got = append(got, idsOf(r)...)
			if !r.More {
				break
			}
			after = r.Messages[len(r.Messages)-1].MsgID
		}
		if !slices.Equal(got, ids[1:]) {
			t.Errorf("forward paging ids %v, want %v", got, ids[1:])
		}
	})

	t.Run("other conversations never appear", func(t *testing.T) {
		r := x.history(t, a, `{"type":"history","toId":"86","limit":50}`)
		checkItems(t, x, r, ids)
		for i, it := range r.Messages {
			if want := fmt.Sprintf("m%02d", i+1); it.Raw != want {
				t.Errorf("message %d is %q, want %q", i, it.Raw, want)
			}
		}
		// 85↔87 holds exactly its own 50 messages, in both directions.
		r = x.history(t, a, `{"type":"history","toId":"87","limit":50}`)
		if len(r.Messages) != 50 || r.More {
			t.Errorf("85↔87 history has %d messages, more %v; want 50, false", len(r.Messages), r.More)
		}
		for _, it := range r.Messages {
			if !(it.FrontID == "85" && it.ToID == "87") && !(it.FrontID == "87" && it.ToID == "85") {
				t.Errorf("history of 85↔87 holds %+v", it)
			}
		}
		// A self conversation holds only the notes to self.
		c := &worker.Client{ID: "cb", UID: "86"}
		r = x.history(t, c, `{"type":"history","toId":"86","limit":50}`)
		if len(r.Messages) != 25 {
			t.Errorf("86↔86 history has %d messages, want 25", len(r.Messages))
		}
		for _, it := range r.Messages {
			if it.FrontID != "86" || it.ToID != "86" {
				t.Errorf("history of 86↔86 holds %+v", it)
			}
		}
	})

	t.Run("a new message shows up after the cursor", func(t *testing.T) {
		x.send(a, sayFrame("85", "86", "fresh", ""))
		frames := x.api.received("cb")
		if len(frames) != 1 {
			t.Fatalf("cb received %q, want one text", frames)
		}
		id := msgIDOf(t, frames[0])
		x.api.received("ca")
		r := x.history(t, b, `{"type":"history","toId":"85","after":`+strconv.FormatInt(ids[24], 10)+`}`)
		checkItems(t, x, r, []int64{id})
		if r.Messages[0].Raw != "fresh" || r.Messages[0].FrontID != "85" {
			t.Errorf("caught up %+v, want the fresh message from 85", r.Messages[0])
		}
	})
}

func TestHistoryLimits(t *testing.T) {
	x := newHarness(t, true)
	ids := seedHistory(t, x, 25)
	c := x.api.connect("c1", "85")
	for _, tt := range []struct {
		field    string
		want     []int64
		wantMore bool
	}{
		{`"limit":1`, ids[24:], true},
		{`"limit":0`, ids[15:], true},
		{`"limit":null`, ids[15:], true},
		{`"limit":24`, ids[1:], true},
		{`"limit":25`, ids, false},
		{`"limit":50`, ids, false},
		{`"before":0`, ids[15:], true},
		{`"after":0`, ids[15:], true},
	} {
		r := x.history(t, c, `{"type":"history","toId":"86",`+tt.field+`}`)
		checkItems(t, x, r, tt.want)
		if r.More != tt.wantMore {
			t.Errorf("%s: more %v, want %v", tt.field, r.More, tt.wantMore)
		}
	}
}

func TestHistoryRefused(t *testing.T) {
	tests := []struct {
		name     string
		uid      string
		frame    string
		wantCode string
	}{
		{"unbound", "", `{"type":"history","toId":"86"}`, "not_bound"},
		{"missing toId", "85", `{"type":"history"}`, "missing_field"},
		{"empty toId", "85", `{"type":"history","toId":""}`, "missing_field"},
		{"null toId", "85", `{"type":"history","toId":null}`, "invalid_field"},
		{"limit over 50", "85", `{"type":"history","toId":"86","limit":51}`, "invalid_field"},
		{"huge limit", "85", `{"type":"history","toId":"86","limit":99999999999999999999}`, "invalid_field"},
		{"negative limit", "85", `{"type":"history","toId":"86","limit":-1}`, "invalid_field"},
		{"string limit", "85", `{"type":"history","toId":"86","limit":"10"}`, "invalid_field"},
		{"fraction limit", "85", `{"type":"history","toId":"86","limit":1.5}`, "invalid_field"},
		{"exponent limit", "85", `{"type":"history","toId":"86","limit":1e1}`, "invalid_field"},
		{"negative before", "85", `{"type":"history","toId":"86","before":-1}`, "invalid_field"},
		{"string after", "85", `{"type":"history","toId":"86","after":"3"}`, "invalid_field"},
		{"before and after", "85", `{"type":"history","toId":"86","before":9,"after":3}`, "invalid_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			c := x.api.connect("c1", tt.uid)
			x.send(c, tt.frame)
			x.wantError(t, "c1", tt.wantCode, "history")
		})
	}
}

func TestHistoryStoreFailure(t *testing.T) {
	db := openTestStore(t)
	st := newFaultyStore(db)
	st.setFail("History", fmt.Errorf("disk on fire"))
	x := newHarnessOn(t, true, db, st)
	c := x.api.connect("c1", "85")
	x.send(c, `{"type":"history","toId":"86"}`)
	x.wantError(t, "c1", "store_failed", "history")
}

func TestRead(t *testing.T) {
	x := newHarness(t, true)
	a := x.api.connect("ca", "85")
	x.api.connect("ca-phone", "85")
	b := x.api.connect("cb", "86")
	x.api.connect("cb-phone", "86")
	x.api.connect("cc", "87")

	var ids []int64
	for i := range 3 {
		x.send(a, sayFrame("85", "86", fmt.Sprintf("m%d", i), ""))
		ids = append(ids, msgIDOf(t, x.api.received("cb")[0]))
	}
	// 86 also has mail from 87 and wrote to 85 itself: neither is marked.
	x.send(&worker.Client{ID: "cc", UID: "87"}, sayFrame("87", "86", "other", ""))
	x.send(b, sayFrame("86", "85", "reply", ""))
	for _, id := range []string{"ca", "ca-phone", "cb", "cb-phone", "cc"} {
		x.api.received(id)
	}
	if got := x.unread(t, "86"); got["85"] != 3 || got["87"] != 1 {
		t.Fatalf("unread of 86 = %v, want {85:3, 87:1}", got)
	}

	sends := len(x.api.sendsToUID())
	x.send(b, `{"type":"read","toId":"85","upTo":`+strconv.FormatInt(ids[1], 10)+`}`)
	receipt := `{"type":"receipt","frontId":"86","toId":"85","upTo":` + strconv.FormatInt(ids[1], 10) + `}`
	for _, id := range []string{"ca", "ca-phone", "cb", "cb-phone"} {
		x.wantFrames(t, id, receipt)
	}
	x.wantFrames(t, "cc")
	if got := x.api.sendsToUID()[sends:]; len(got) != 1 || !slices.Contains(got[0], "85") || !slices.Contains(got[0], "86") {
		t.Errorf("SendToUID calls %v, want one to 85 and 86", got)
	}
	if got := x.unread(t, "86"); got["85"] != 1 || got["87"] != 1 {
		t.Errorf("unread of 86 after the read = %v, want {85:1, 87:1}", got)
	}
	if got := x.unread(t, "85"); got["86"] != 1 {
		t.Errorf("unread of 85 = %v, want 86's reply still unread", got)
	}
	r := x.history(t, b, `{"type":"history","toId":"85"}`)
	for _, it := range r.Messages {
		wantRead := 0
		if it.FrontID == "85" && it.MsgID <= ids[1] {
			wantRead = 1
		}
		if it.IsRead != wantRead {
			t.Errorf("after the read, history item %+v, want is_read %d", it, wantRead)
		}
	}

	// The same read again marks nothing: only the asking connection gets
	// the receipt, as an acknowledgement.
	sends = len(x.api.sendsToUID())
	x.send(b, `{"type":"read","toId":"85","upTo":`+strconv.FormatInt(ids[1], 10)+`}`)
	x.wantFrames(t, "cb", receipt)
	for _, id := range []string{"ca", "ca-phone", "cb-phone", "cc"} {
		x.wantFrames(t, id)
	}
	if got := x.api.sendsToUID()[sends:]; len(got) != 0 {
		t.Errorf("idempotent read made SendToUID calls %v", got)
	}

	// Reading the rest (integer toId) empties the count from 85.
	x.send(b, `{"type":"read","toId":85,"upTo":`+strconv.FormatInt(ids[2], 10)+`}`)
	receipt = `{"type":"receipt","frontId":"86","toId":"85","upTo":` + strconv.FormatInt(ids[2], 10) + `}`
	x.wantFrames(t, "ca", receipt)
	x.wantFrames(t, "cb", receipt)
	if got := x.unread(t, "86"); len(got) != 1 || got["87"] != 1 {
		t.Errorf("unread of 86 = %v, want {87:1}", got)
	}
	// And the next bind says so.
	b2 := x.api.connect("cb2", "")
	x.send(b2, `{"type":"bind","frontId":"86"}`)
	x.wantFrames(t, "cb2", `{"type":"bound","client_id":"cb2","frontId":"86","unread":{"87":1}}`)
}

func TestReadRefused(t *testing.T) {
	tests := []struct {
		name     string
		uid      string
		frame    string
		wantCode string
	}{
		{"unbound", "", `{"type":"read","toId":"85","upTo":3}`, "not_bound"},
		{"missing toId", "86", `{"type":"read","upTo":3}`, "missing_field"},
		{"bool toId", "86", `{"type":"read","toId":true,"upTo":3}`, "invalid_field"},
		{"missing upTo", "86", `{"type":"read","toId":"85"}`, "missing_field"},
		{"null upTo", "86", `{"type":"read","toId":"85","upTo":null}`, "missing_field"},
		{"zero upTo", "86", `{"type":"read","toId":"85","upTo":0}`, "missing_field"},
		{"negative upTo", "86", `{"type":"read","toId":"85","upTo":-1}`, "invalid_field"},
		{"string upTo", "86", `{"type":"read","toId":"85","upTo":"3"}`, "invalid_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			if _, err := x.db.SaveMessages(context.Background(), []store.NewMessage{{From: "85", To: "86", Text: "hi", Kind: store.KindText}}); err != nil {
				t.Fatal(err)
			}
			c := x.api.connect("c1", tt.uid)
			x.api.connect("c2", "85")
			x.send(c, tt.frame)
			x.wantError(t, "c1", tt.wantCode, "read")
			x.wantFrames(t, "c2")
			if got := x.unread(t, "86"); got["85"] != 1 {
				t.Errorf("unread of 86 = %v, want the message still unread", got)
			}
		})
	}
}

func TestReadStoreFailure(t *testing.T) {
	db := openTestStore(t)
	st := newFaultyStore(db)
	st.setFail("MarkRead", fmt.Errorf("disk on fire"))
	x := newHarnessOn(t, true, db, st)
	c := x.api.connect("c1", "86")
	x.api.connect("c2", "85")
	x.send(c, `{"type":"read","toId":"85","upTo":1}`)
	x.wantError(t, "c1", "store_failed", "read")
	x.wantFrames(t, "c2")
}

func TestProfile(t *testing.T) {
	x := newHarness(t, true)
	if err := x.db.UpsertUsers(context.Background(), store.DemoUsers()); err != nil {
		t.Fatal(err)
	}
	visitor := x.api.connect("c1", "85")
	agent := x.api.connect("c2", "86")
	stranger := x.api.connect("c3", "a b/c")

	x.send(visitor, `{"type":"profile","toId":"86"}`)
	x.wantFrames(t, "c1", `{"type":"profile",`+
		`"self":{"uid":"85","nickname":"Love violet life","avatar":"/avatars/85.svg","role":"visitor"},`+
		`"peer":{"uid":"86","nickname":"大美如斯","avatar":"/avatars/86.svg","role":"agent"}}`)

	x.send(agent, `{"type":"profile","toId":88}`)
	x.wantFrames(t, "c2", `{"type":"profile",`+
		`"self":{"uid":"86","nickname":"大美如斯","avatar":"/avatars/86.svg","role":"agent"},`+
		`"peer":{"uid":"88","nickname":"悦悦","avatar":"/avatars/88.svg","role":"agent"}}`)

	// Unknown users: the uid as nickname, the generated avatar, visitor.
	x.send(agent, `{"type":"profile","toId":"999"}`)
	x.wantFrames(t, "c2", `{"type":"profile",`+
		`"self":{"uid":"86","nickname":"大美如斯","avatar":"/avatars/86.svg","role":"agent"},`+
		`"peer":{"uid":"999","nickname":"999","avatar":"/avatars/999.svg","role":"visitor"}}`)
	x.send(stranger, `{"type":"profile","toId":"89"}`)
	x.wantFrames(t, "c3", `{"type":"profile",`+
		`"self":{"uid":"a b/c","nickname":"a b/c","avatar":"/avatars/a%20b%2Fc.svg","role":"visitor"},`+
		`"peer":{"uid":"89","nickname":"雨薇","avatar":"/avatars/89.svg","role":"visitor"}}`)

	// A user stored without nickname or avatar gets the defaults for them.
	if err := x.db.UpsertUsers(context.Background(), []store.User{{UID: "90", Role: store.RoleAgent}}); err != nil {
		t.Fatal(err)
	}
	x.send(visitor, `{"type":"profile","toId":"90"}`)
	x.wantFrames(t, "c1", `{"type":"profile",`+
		`"self":{"uid":"85","nickname":"Love violet life","avatar":"/avatars/85.svg","role":"visitor"},`+
		`"peer":{"uid":"90","nickname":"90","avatar":"/avatars/90.svg","role":"agent"}}`)
}

func TestProfileRefused(t *testing.T) {
	for _, tt := range []struct {
		name, uid, frame, wantCode string
	}{
		{"unbound", "", `{"type":"profile","toId":"86"}`, "not_bound"},
		{"missing toId", "85", `{"type":"profile"}`, "missing_field"},
		{"array toId", "85", `{"type":"profile","toId":["86"]}`, "invalid_field"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			c := x.api.connect("c1", tt.uid)
			x.send(c, tt.frame)
			x.wantError(t, "c1", tt.wantCode, "profile")
		})
	}
	t.Run("store failure", func(t *testing.T) {
		db := openTestStore(t)
		st := newFaultyStore(db)
		st.setFail("Users", fmt.Errorf("disk on fire"))
		x := newHarnessOn(t, true, db, st)
		c := x.api.connect("c1", "85")
		x.send(c, `{"type":"profile","toId":"86"}`)
		x.wantError(t, "c1", "store_failed", "profile")
	})
}
