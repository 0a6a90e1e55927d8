package chat

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/worker"
)

// TestSayRetryOfDeliveredMessage: a retry with the same cmid after the
// delivery was recorded stores nothing, is not delivered again and gets the
// same save.
func TestSayRetryOfDeliveredMessage(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c2", "86")
	frame := sayFrame("85", "86", "hello <once>", "m-1")

	x.send(sender, frame)
	texts := x.api.received("c2")
	if len(texts) != 1 {
		t.Fatalf("c2 received %q, want one text", texts)
	}
	m := x.stored(t, "85", "86", msgIDOf(t, texts[0]))
	if m.CMID != "m-1" {
		t.Errorf("stored cmid %q, want m-1", m.CMID)
	}
	if want := wantMessageFrame("text", "c1", m, 0, ""); texts[0] != want {
		t.Errorf("c2 received\n%s\nwant\n%s", texts[0], want)
	}
	save := wantMessageFrame("save", "c1", m, 1, "m-1")
	x.wantFrames(t, "c1", save)
	x.waitDelivered(t, "85", "86", m.ID)

	before := len(x.api.sendsToUID())
	x.send(sender, frame)
	x.wantFrames(t, "c2") // not delivered again
	x.wantFrames(t, "c1", save)
	if got := x.api.sendsToUID()[before:]; !slices.EqualFunc(got, [][]string{{"85"}}, slices.Equal) {
		t.Errorf("retry made SendToUID calls %v, want only the save to 85", got)
	}
	if msgs := x.conversation(t, "85", "86"); len(msgs) != 1 {
		t.Errorf("stored %d messages after the retry, want 1: %+v", len(msgs), msgs)
	}

	// The cmid identifies the message: a retry with other content still
	// gets the stored one.
	x.send(sender, sayFrame("85", "86", "edited", "m-1"))
	x.wantFrames(t, "c2")
	x.wantFrames(t, "c1", save)
	if msgs := x.conversation(t, "85", "86"); len(msgs) != 1 || msgs[0].Text != "hello <once>" {
		t.Errorf("stored %+v, want only the first message", msgs)
	}
}

// TestSayRetryOfUndeliveredMessage: a retry of a message that reached
// nobody yet delivers the stored message, with its msg_id and date.
func TestSayRetryOfUndeliveredMessage(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	frame := sayFrame("85", "86", "are you there?", "m-2")
	m, unreadSave := x.sayToOffline(t, sender, frame, "m-2")

	// Still offline: the same save again, nothing stored.
	x.send(sender, frame)
	x.wantFrames(t, "c1", unreadSave)

	// Online now: the retry delivers the stored message.
	x.api.connect("c2", "86")
	x.send(sender, frame)
	x.wantFrames(t, "c2", wantMessageFrame("text", "c1", m, 0, ""))
	x.wantFrames(t, "c1", wantMessageFrame("save", "c1", m, 1, "m-2"))
	x.waitDelivered(t, "85", "86", m.ID)

	// Delivered: a further retry is acknowledged only.
	x.send(sender, frame)
	x.wantFrames(t, "c2")
	x.wantFrames(t, "c1", wantMessageFrame("save", "c1", m, 1, "m-2"))
	if msgs := x.conversation(t, "85", "86"); len(msgs) != 1 {
		t.Errorf("stored %d messages, want 1: %+v", len(msgs), msgs)
	}
}

// TestSayRetryWaitsForRetrySettle: a retry of a message nobody recorded as
// delivered, younger than RetrySettle, is acknowledged with is_read 0 and
// not delivered (its first say may still be delivering it); once the
// message is older, a retry delivers it.
func TestSayRetryWaitsForRetrySettle(t *testing.T) {
	const settle = 300 * time.Millisecond
	db := openTestStore(t)
	x := newHarnessWith(t, db, db, Config{InsecureBind: true, RetrySettle: settle})
	sender := x.api.connect("c1", "85")
	frame := sayFrame("85", "86", "still there?", "m-3")
	m, unreadSave := x.sayToOffline(t, sender, frame, "m-3")

	x.api.connect("c2", "86")
	x.send(sender, frame)
	x.wantFrames(t, "c2") // too young: its first say may be delivering it
	x.wantFrames(t, "c1", unreadSave)

	time.Sleep(time.Until(m.CreatedAt.Add(settle)))
	x.send(sender, frame)
	x.wantFrames(t, "c2", wantMessageFrame("text", "c1", m, 0, ""))
	x.wantFrames(t, "c1", wantMessageFrame("save", "c1", m, 1, "m-3"))
}

// sayToOffline sends frame, a say from 85 to 86 (offline) with cmid, on
// sender (c1), checks that c1 got the save with is_read 0 and returns the
// stored message and that save.
func (x *harness) sayToOffline(t *testing.T, sender *worker.Client, frame, cmid string) (store.Message, string) {
	t.Helper()
	x.send(sender, frame)
	got := x.api.received("c1")
	if len(got) != 1 {
		t.Fatalf("c1 received %q, want one save", got)
	}
	m := x.stored(t, "85", "86", msgIDOf(t, got[0]))
	unreadSave := wantMessageFrame("save", "c1", m, 0, cmid)
	if got[0] != unreadSave {
		t.Errorf("c1 received\n%s\nwant\n%s", got[0], unreadSave)
	}
	return m, unreadSave
}

// TestSayCMIDIsPerSender: two senders may use the same cmid.
func TestSayCMIDIsPerSender(t *testing.T) {
	x := newHarness(t, true)
	a := x.api.connect("ca", "85")
	b := x.api.connect("cb", "87")
	x.send(a, sayFrame("85", "86", "from 85", "same"))
	x.send(b, sayFrame("87", "86", "from 87", "same"))
	ida := msgIDOf(t, x.api.received("ca")[0])
	idb := msgIDOf(t, x.api.received("cb")[0])
	if ida == idb {
		t.Fatalf("both senders got msg_id %d", ida)
	}
	if got := x.unread(t, "86"); got["85"] != 1 || got["87"] != 1 {
		t.Errorf("unread of 86 = %v, want one from each sender", got)
	}
}

// TestSayConcurrentRetriesStoreOnce sends one cmid from several goroutines
// at once: they may share a batch, and all must get the one message.
//
// With the default RetrySettle the retries, all younger than it, deliver
// nothing: the peer gets the text exactly once, from the say that stored
// it, however the retries race its delivery and the batched record of it.
func TestSayConcurrentRetriesStoreOnce(t *testing.T) {
	db := openTestStore(t)
	x := newHarnessWith(t, db, db, Config{InsecureBind: true})
	x.api.connect("c2", "86")
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		c := x.api.connect(fmt.Sprintf("s%d", i), "85")
		wg.Add(1)
		go func() {
			defer wg.Done()
			x.send(c, sayFrame("85", "86", "once", "dup"))
		}()
	}
	wg.Wait()
	msgs := x.conversation(t, "85", "86")
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1: %+v", len(msgs), msgs)
	}
	// Every save every device got names the one message.
	for i := range n {
		for _, f := range x.api.received(fmt.Sprintf("s%d", i)) {
			if v := decode(t, f); v["type"] != "save" || msgIDOf(t, f) != msgs[0].ID || v["cmid"] != "dup" || v["date"] != dateOf(msgs[0]) {
				t.Errorf("s%d got %s, want a save of message %d", i, f, msgs[0].ID)
			}
		}
	}
	texts := x.api.received("c2")
	if len(texts) != 1 {
		t.Errorf("c2 received %d texts, want 1", len(texts))
	}
	for _, f := range texts {
		if msgIDOf(t, f) != msgs[0].ID {
			t.Errorf("c2 got %s, want message %d", f, msgs[0].ID)
		}
	}
}

// TestSayConcurrentSendersGetDistinctMessages exercises the batcher: many
// messages at once are all stored, delivered and acknowledged once each.
func TestSayConcurrentSendersGetDistinctMessages(t *testing.T) {
	x := newHarness(t, true)
	x.api.connect("c2", "86")
	const n = 32
	var wg sync.WaitGroup
	for i := range n {
		c := &worker.Client{ID: fmt.Sprintf("s%d", i), UID: "85"}
		wg.Add(1)
		go func() {
			defer wg.Done()
			x.send(c, sayFrame("85", "86", fmt.Sprintf("message %d", i), fmt.Sprintf("cm-%d", i)))
		}()
	}
	wg.Wait()
	msgs := x.conversation(t, "85", "86")
	if len(msgs) != n {
		t.Fatalf("stored %d messages, want %d", len(msgs), n)
	}
	texts := x.api.received("c2")
	if len(texts) != n {
		t.Fatalf("c2 received %d texts, want %d", len(texts), n)
	}
	seen := map[int64]bool{}
	for _, f := range texts {
		id := msgIDOf(t, f)
		if seen[id] {
			t.Errorf("message %d delivered twice", id)
		}
		seen[id] = true
		m := x.stored(t, "85", "86", id)
		sender, _ := decode(t, f)["id"].(string)
		if want := wantMessageFrame("text", sender, m, 0, ""); f != want {
			t.Errorf("c2 got\n%s\nwant\n%s", f, want)
		}
		if m.CMID != "cm-"+strings.TrimPrefix(sender, "s") || m.Text != "message "+strings.TrimPrefix(sender, "s") {
			t.Errorf("message %d from %s stored as %+v", id, sender, m)
		}
	}
}

// TestSayStoreFailure: when the message cannot be stored the sender gets a
// store_failed error naming the cmid, and nothing is delivered or saved.
func TestSayStoreFailure(t *testing.T) {
	db := openTestStore(t)
	st := newFaultyStore(db)
	x := newHarnessOn(t, true, db, st)
	sender := x.api.connect("c1", "85")
	x.api.connect("c1-phone", "85")
	x.api.connect("c2", "86")
	st.setFail("SaveMessages", errors.New("disk on fire"))

	x.send(sender, sayFrame("85", "86", "top secret body", "m-9"))
	x.wantErrorCMID(t, "c1", "store_failed", "say", "m-9")
	x.wantFrames(t, "c1-phone")
	x.wantFrames(t, "c2")
	if sends := x.api.sendsToUID(); len(sends) != 0 {
		t.Errorf("SendToUID calls %v, want none", sends)
	}

	// Without a cmid the error names none.
	x.send(sender, sayFrame("85", "86", "top secret body", ""))
	x.wantError(t, "c1", "store_failed", "say")
	x.wantFrames(t, "c2")

	if msgs := x.conversation(t, "85", "86"); len(msgs) != 0 {
		t.Errorf("stored %+v, want nothing", msgs)
	}
	logs := x.log.String()
	for _, want := range []string{`"level":"WARN"`, `"code":"store_failed"`, "disk on fire", `"uid":"85"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log %s lacks %s", logs, want)
		}
	}
	if strings.Contains(logs, "top secret") {
		t.Errorf("log %s contains the message body", logs)
	}

	// Once the store is back, the retry is stored and delivered once.
	st.setFail("SaveMessages", nil)
	x.send(sender, sayFrame("85", "86", "top secret body", "m-9"))
	texts := x.api.received("c2")
	if len(texts) != 1 {
		t.Fatalf("c2 received %q after recovery, want one text", texts)
	}
	m := x.stored(t, "85", "86", msgIDOf(t, texts[0]))
	x.wantFrames(t, "c1", wantMessageFrame("save", "c1", m, 1, "m-9"))
	if msgs := x.conversation(t, "85", "86"); len(msgs) != 1 {
		t.Errorf("stored %d messages, want 1", len(msgs))
	}
}

// TestSayLookupFailureSavesUnread: when the directory cannot say where the
// two ends are connected, the message is stored and waits as unread, no
// frame goes out, and a retry once the directory answers delivers it.
func TestSayLookupFailureSavesUnread(t *testing.T) {
	x := newHarness(t, true)
	sender := x.api.connect("c1", "85")
	x.api.connect("c2", "86")
	x.api.mu.Lock()
	x.api.lookupErr = fmt.Errorf("redis down: %w", worker.ErrUnavailable)
	x.api.mu.Unlock()
	frame := sayFrame("85", "86", "hello", "m-1")
	x.send(sender, frame)
	x.wantFrames(t, "c1")
	x.wantFrames(t, "c2")
	msgs := x.conversation(t, "85", "86")
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1", len(msgs))
	}
	if got := x.unread(t, "86"); got["85"] != 1 || len(got) != 1 {
		t.Errorf("unread of 86 = %v, want {85:1}", got)
	}
	if logs := x.log.String(); !strings.Contains(logs, `"err":"redis down: unavailable"`) || !strings.Contains(logs, `"level":"WARN"`) {
		t.Errorf("log %s lacks the lookup failure", logs)
	}

	x.api.mu.Lock()
	x.api.lookupErr = nil
	x.api.mu.Unlock()
	x.send(sender, frame)
	m := msgs[0]
	x.wantFrames(t, "c2", wantMessageFrame("text", "c1", m, 0, ""))
	x.wantFrames(t, "c1", wantMessageFrame("save", "c1", m, 1, "m-1"))
}
