package store

import (
	"context"
	"time"

	"github.com/gatewire/gatewire/internal/metrics"
)

// WithMetrics returns st with the latency of every call observed in
// metrics.StoreOps.
func WithMetrics(st Store) Store { return measured{st} }

// measured embeds the Store, so that the desk's calls pass through; the
// message calls and the assignment calls are observed.
type measured struct{ Store }

// observe records a call of op that began at start and ended with *err
// (a pointer: it is deferred before the result is known).
func observe(op string, start time.Time, err *error) {
	metrics.Since(metrics.StoreOps.WithLabelValues(op, metrics.Result(*err)), start)
}

func (m measured) SaveMessages(ctx context.Context, msgs []NewMessage) (s []Saved, err error) {
	defer observe("save_messages", time.Now(), &err)
	return m.Store.SaveMessages(ctx, msgs)
}

func (m measured) ClaimDelivery(ctx context.Context, id int64, minAge time.Duration) (ok bool, err error) {
	defer observe("claim_delivery", time.Now(), &err)
	return m.Store.ClaimDelivery(ctx, id, minAge)
}

func (m measured) MarkDelivered(ctx context.Context, ids []int64) (err error) {
	defer observe("mark_delivered", time.Now(), &err)
	return m.Store.MarkDelivered(ctx, ids)
}

func (m measured) ReleaseDelivery(ctx context.Context, id int64) (err error) {
	defer observe("release_delivery", time.Now(), &err)
	return m.Store.ReleaseDelivery(ctx, id)
}

func (m measured) History(ctx context.Context, a, b string, p Page) (msgs []Message, err error) {
	defer observe("history", time.Now(), &err)
	return m.Store.History(ctx, a, b, p)
}

func (m measured) MarkRead(ctx context.Context, reader, peer string, upTo int64) (n int64, err error) {
	defer observe("mark_read", time.Now(), &err)
	return m.Store.MarkRead(ctx, reader, peer, upTo)
}

func (m measured) UnreadCounts(ctx context.Context, uid string) (c map[string]int, err error) {
	defer observe("unread_counts", time.Now(), &err)
	return m.Store.UnreadCounts(ctx, uid)
}

func (m measured) Users(ctx context.Context, uids ...string) (u map[string]User, err error) {
	defer observe("users", time.Now(), &err)
	return m.Store.Users(ctx, uids...)
}

func (m measured) UpsertUsers(ctx context.Context, users []User) (err error) {
	defer observe("upsert_users", time.Now(), &err)
	return m.Store.UpsertUsers(ctx, users)
}

func (m measured) Close() error { return m.Store.Close() }

func (m measured) Assign(ctx context.Context, visitor string, maxOpen int, now time.Time) (a Assignment, err error) {
	defer observe("desk_assign", time.Now(), &err)
	return m.Store.Assign(ctx, visitor, maxOpen, now)
}

func (m measured) AssignNext(ctx context.Context, maxOpen int, now time.Time) (a Assignment, err error) {
	defer observe("desk_assign_next", time.Now(), &err)
	return m.Store.AssignNext(ctx, maxOpen, now)
}

func (m measured) ConversationHistory(ctx context.Context, visitor string, p Page) (msgs []Message, err error) {
	defer observe("desk_history", time.Now(), &err)
	return m.Store.ConversationHistory(ctx, visitor, p)
}

func (m measured) Conversations(ctx context.Context, f ConversationFilter) (c []ConversationSummary, err error) {
	defer observe("desk_conversations", time.Now(), &err)
	return m.Store.Conversations(ctx, f)
}
