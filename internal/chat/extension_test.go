package chat

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/worker"
)

// recordingExtension handles "x.ping" and records what it saw.
type recordingExtension struct {
	mu       sync.Mutex
	requests []string // "client_id type data"
	closes   []string
}

func (e *recordingExtension) HandlesType(typ string) bool { return typ == "x.ping" }

func (e *recordingExtension) OnRequest(_ context.Context, c *worker.Client, typ string, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests = append(e.requests, c.ID+" "+typ+" "+string(data))
}

func (e *recordingExtension) OnClose(_ context.Context, c *worker.Client) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closes = append(e.closes, c.ID)
}

// TestExtension: request types the chat does not know go to the Extension
// when it handles them (with the whole frame, and no reply from the chat);
// others still get unknown_type; the chat's own types never reach it; every
// close is passed on.
func TestExtension(t *testing.T) {
	db := openTestStore(t)
	ext := &recordingExtension{}
	api := newFakeAPI(2 * time.Second)
	h := New(Config{InsecureBind: true, Timeout: 2 * time.Second, Extension: ext}, api, db, nil)
	defer h.Close()
	ctx := context.WithValue(context.Background(), ctxKey{}, "handler ctx")
	c := api.connect("c1", "85")
	frame := `{"type":"x.ping","n":1}`
	h.OnMessage(ctx, c, worker.Message{Data: []byte(frame)})
	h.OnMessage(ctx, c, worker.Message{Data: []byte(`{"type":"x.pong"}`)})
	h.OnMessage(ctx, c, worker.Message{Data: []byte(`{"type":"profile","toId":"86"}`)})
	got := api.received("c1")
	if len(got) != 2 {
		t.Fatalf("c1 received %q, want an unknown_type error and a profile", got)
	}
	checkErrorFrame(t, got[0], codeUnknownType, "x.pong")
	h.OnClose(ctx, c)
	ext.mu.Lock()
	defer ext.mu.Unlock()
	if want := []string{"c1 x.ping " + frame}; !slices.Equal(ext.requests, want) {
		t.Errorf("extension requests %q, want %q", ext.requests, want)
	}
	if !slices.Equal(ext.closes, []string{"c1"}) {
		t.Errorf("extension closes %q, want [c1]", ext.closes)
	}
}
