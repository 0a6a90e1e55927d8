package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/testsvc"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

var dbSeq atomic.Int64

// freshDatabase creates an empty database on the server of dsn and returns
// its DSN.
func freshDatabase(tb testing.TB, dsn string) string {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("gatewire_%d", dbSeq.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func openPostgresT(tb testing.TB, dsn string) *Postgres {
	tb.Helper()
	s, err := OpenPostgres(context.Background(), dsn)
	if err != nil {
		tb.Fatalf("OpenPostgres: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	dsn := testsvc.Postgres(t)
	var dsns sync.Map // *Postgres → its DSN
	testStore(t, func(t *testing.T) Store {
		db := freshDatabase(t, dsn)
		s := openPostgresT(t, db)
		dsns.Store(s, db)
		return s
	}, func(t *testing.T, s Store) Store {
		db, _ := dsns.Load(s)
		return openPostgresT(t, db.(string))
	})
}

func pgVersions(t *testing.T, s *Postgres) []int {
	t.Helper()
	rows, _ := s.pool.Query(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = int(v)
	}
	return out
}

// TestPostgresConcurrentOpen opens one fresh database from 8 goroutines at
// once, as 8 processes starting together would. Without the advisory lock
// they race to create the same tables and most fail.
func TestPostgresConcurrentOpen(t *testing.T) {
	dsn := freshDatabase(t, testsvc.Postgres(t))
	stores := make([]*Postgres, 8)
	start := make(chan struct{})
	var g errgroup.Group
	for i := range stores {
		g.Go(func() error {
			<-start
			s, err := OpenPostgres(t.Context(), dsn)
			stores[i] = s
			return err
		})
	}
	close(start)
	err := g.Wait()
	for _, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	want := wantVersions(t, "migrations/postgres")
	if got := pgVersions(t, stores[0]); !slices.Equal(got, want) {
		t.Fatalf("schema_migrations = %v, want %v", got, want)
	}
	// Applied once: every version has one applied_at, from one transaction.
	var distinct int
	if err := stores[0].pool.QueryRow(t.Context(),
		`SELECT count(DISTINCT applied_at) FROM schema_migrations`).Scan(&distinct); err != nil || distinct != 1 {
		t.Fatalf("distinct applied_at = %d, %v; want 1", distinct, err)
	}
	saved := save(t, stores[1], text("85", "86", "hi"))
	sameMessages(t, history(t, stores[6], "86", "85", Page{}), messages(saved))
}

// TestPostgresReopen opens a migrated database again: nothing is re-applied
// and the data stays.
func TestPostgresReopen(t *testing.T) {
	dsn := freshDatabase(t, testsvc.Postgres(t))
	s := openPostgresT(t, dsn)
	saved := save(t, s, text("85", "86", "kept"))
	want := pgVersions(t, s)
	s.Close()
	s = openPostgresT(t, dsn)
	sameMessages(t, history(t, s, "85", "86", Page{}), messages(saved))
	if got := pgVersions(t, s); !slices.Equal(got, want) || !slices.Equal(got, wantVersions(t, "migrations/postgres")) {
		t.Fatalf("schema_migrations after reopen = %v, want %v", got, want)
	}
}

// TestPostgresPlans checks that the hot queries are index scans of the
// indexes the schema made for them, on an analysed table of a few thousand
// rows. The planner chooses them unaided: enable_seqscan stays on.
func TestPostgresPlans(t *testing.T) {
	s := openPostgresT(t, freshDatabase(t, testsvc.Postgres(t)))
	ctx := ctxT(t)
	// 100 conversations of 30 messages, and v007↔a2 of 2000: paging it is
	// an ordered index scan that stops after Limit rows, no sort.
	const conversations, perConversation, big = 100, 30, 2000
	var batch []NewMessage
	for c := range conversations {
		n := perConversation
		if c == 7 {
			n = big
		}
		for i := range n {
			from, to := fmt.Sprintf("v%03d", c), fmt.Sprintf("a%d", c%5)
			if i%2 == 1 {
				from, to = to, from
			}
			batch = append(batch, text(from, to, fmt.Sprintf("message %d of %d", i, c)))
		}
	}
	for i := 0; i < len(batch); i += 500 {
		save(t, s, batch[i:min(i+500, len(batch))]...)
	}
	// Most messages are read, as in a live system.
	for c := range conversations {
		v, a := fmt.Sprintf("v%03d", c), fmt.Sprintf("a%d", c%5)
		if _, err := s.MarkRead(ctx, a, v, math.MaxInt64); err != nil {
			t.Fatal(err)
		}
		if _, err := s.MarkRead(ctx, v, a, math.MaxInt64); err != nil {
			t.Fatal(err)
		}
	}
	save(t, s, text("v007", "a2", "unread 1"), text("v007", "a2", "unread 2"), text("v012", "a2", "unread 3"))
	if _, err := s.pool.Exec(ctx, `ANALYZE messages`); err != nil {
		t.Fatal(err)
	}
	lo, hi := peers("v007", "a2")
	for _, tc := range []struct {
		name, sql, index string
		args             []any
		ordered          bool // the index delivers the order: no Sort node
	}{
		{"history newest", pgHistoryNewest, "messages_conversation", []any{lo, hi, int64(0), int64(math.MaxInt64), 10}, true},
		{"history before", pgHistoryNewest, "messages_conversation", []any{lo, hi, int64(0), int64(1500), 10}, true},
		{"history after", pgHistoryOldest, "messages_conversation", []any{lo, hi, int64(500), int64(math.MaxInt64), 10}, true},
		{"unread counts", pgUnreadCounts, "messages_unread", []any{"a2"}, false},
		{"mark read", pgMarkRead, "messages_unread", []any{"a2", "v007", int64(math.MaxInt64)}, false},
		{"duplicates", pgSelectByCMID, "messages_cmid", []any{[]string{"v007"}, []string{"c1"}}, false},
	} {
		var plan string
		if err := s.pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+tc.sql, tc.args...).Scan(&plan); err != nil {
			t.Fatalf("%s: explain: %v", tc.name, err)
		}
		uses, summary := planUsesIndex(t, plan, tc.index)
		if !uses {
			t.Errorf("%s: plan does not scan index %s:\n%s", tc.name, tc.index, plan)
		}
		if tc.ordered && strings.Contains(summary, "Sort") {
			t.Errorf("%s: plan sorts: %s", tc.name, summary)
		}
		t.Logf("%s: %s", tc.name, summary)
	}
}

// TestPostgresGenericPlans checks the generic plans that pgx's prepared
// statements get once PostgreSQL caches one (after five runs), made on a
// new, unanalyzed table: each must probe its primary key, with no
// sequential scan or hash. A sequential scan cached early would cost a
// scan per call until autovacuum's first ANALYZE.
func TestPostgresGenericPlans(t *testing.T) {
	s := openPostgresT(t, freshDatabase(t, testsvc.Postgres(t)))
	ctx := ctxT(t)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	// The connection goes back to the pool as it came: the store and its
	// database are dropped with the test, so a failure here changes nothing.
	defer conn.Exec(ctx, `DEALLOCATE ALL; RESET plan_cache_mode`) //nolint:errcheck
	for _, c := range []struct {
		name, params, query, args, index string
	}{
		{"mark_delivered", "bigint[]", pgMarkDelivered, `'{1,2,3}'`, "messages_pkey"},
		{"users", "text[]", pgUsers, `'{a,b,c}'`, "users_pkey"},
	} {
		if _, err := conn.Exec(ctx, fmt.Sprintf(`PREPARE %s(%s) AS %s`, c.name, c.params, c.query)); err != nil {
			t.Fatalf("prepare %s: %v", c.name, err)
		}
		var plan string
		if err := conn.QueryRow(ctx, fmt.Sprintf(`EXPLAIN (FORMAT JSON) EXECUTE %s(%s)`, c.name, c.args)).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		uses, summary := planUsesIndex(t, plan, c.index)
		if !uses || strings.Contains(summary, "Seq Scan") || strings.Contains(summary, "Hash") {
			t.Errorf("generic plan of %s on a new table does not probe %s: %s", c.name, c.index, summary)
		}
		t.Logf("%s: %s", c.name, summary)
	}
}

// planUsesIndex reports whether an EXPLAIN (FORMAT JSON) plan has an index
// scan node (plain, index-only or bitmap) on index, and summarises the plan.
func planUsesIndex(t *testing.T, plan, index string) (bool, string) {
	t.Helper()
	type node struct {
		NodeType  string `json:"Node Type"`
		IndexName string `json:"Index Name"`
		Plans     []node `json:"Plans"`
	}
	var doc []struct {
		Plan node `json:"Plan"`
	}
	if err := json.Unmarshal([]byte(plan), &doc); err != nil || len(doc) != 1 {
		t.Fatalf("parse plan: %v\n%s", err, plan)
	}
	uses := false
	var walk func(n node) string
	walk = func(n node) string {
		s := n.NodeType
		if n.IndexName != "" {
			s += " on " + n.IndexName
		}
		switch n.NodeType {
		case "Index Scan", "Index Only Scan", "Bitmap Index Scan":
			uses = uses || n.IndexName == index
		}
		var kids []string
		for _, k := range n.Plans {
			kids = append(kids, walk(k))
		}
		if len(kids) > 0 {
			s += " (" + strings.Join(kids, ", ") + ")"
		}
		return s
	}
	summary := walk(doc[0].Plan)
	return uses, summary
}

// TestPostgresDeadlockRetry makes SaveMessages the victim of a deadlock and
// checks that it runs the insert again: a transaction holds cmid "B"
// uncommitted while SaveMessages inserts "A" then waits for "B"; the
// transaction then inserts "A" and waits for SaveMessages. PostgreSQL
// aborts the first waiter, SaveMessages, after deadlock_timeout (1s).
func TestPostgresDeadlockRetry(t *testing.T) {
	s := openPostgresT(t, freshDatabase(t, testsvc.Postgres(t)))
	ctx := ctxT(t)
	const insert = `INSERT INTO messages (from_uid, to_uid, peer_lo, peer_hi, body, cmid) VALUES ('85', '86', '85', '86', $1, $2)`
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, insert, "B from tx", "B"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		saved []Saved
		err   error
	}
	done := make(chan result, 1)
	go func() {
		saved, err := s.SaveMessages(ctx, []NewMessage{
			{From: "85", To: "86", Text: "A from batch", Kind: KindText, CMID: "A"},
			{From: "85", To: "86", Text: "B from batch", Kind: KindText, CMID: "B"},
		})
		done <- result{saved, err}
	}()
	// Wait until SaveMessages waits for the transaction.
	for {
		var waiting int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("SaveMessages did not wait: %+v", r)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := tx.Exec(ctx, insert, "A from tx", "A"); err != nil {
		t.Fatalf("the transaction, not SaveMessages, was the deadlock victim: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("SaveMessages after a deadlock: %v", r.err)
	}
	for i, want := range []string{"A from tx", "B from tx"} {
		if !r.saved[i].Duplicate || r.saved[i].Message.Text != want {
			t.Errorf("result %d = %+v, want duplicate %q", i, r.saved[i], want)
		}
	}
}

// TestOpenPostgresURL checks that Open takes both PostgreSQL schemes.
func TestOpenPostgresURL(t *testing.T) {
	dsn := testsvc.Postgres(t)
	for _, url := range []string{
		freshDatabase(t, dsn),
		"postgresql" + strings.TrimPrefix(freshDatabase(t, dsn), "postgres"),
	} {
		s, err := Open(t.Context(), url)
		if err != nil {
			t.Fatalf("Open(%q): %v", url, err)
		}
		if _, ok := s.(*Postgres); !ok {
			t.Errorf("Open(%q) = %T, want *Postgres", url, s)
		}
		if _, err := s.SaveMessages(t.Context(), []NewMessage{text("85", "86", "hi")}); err != nil {
			t.Errorf("Open(%q): save: %v", url, err)
		}
		s.Close()
	}
}

// BenchmarkSaveMessages measures SaveMessages on PostgreSQL for batch sizes
// 1, 8 and 64 (messages with distinct cmids, 100 senders).
func BenchmarkSaveMessages(b *testing.B) {
	dsn := testsvc.Postgres(b)
	for _, size := range []int{1, 8, 64} {
		b.Run("batch="+strconv.Itoa(size), func(b *testing.B) {
			benchSave(b, openPostgresT(b, freshDatabase(b, dsn)), size)
		})
	}
}

// BenchmarkSaveMessagesSQLite is BenchmarkSaveMessages on SQLite.
func BenchmarkSaveMessagesSQLite(b *testing.B) {
	for _, size := range []int{1, 8, 64} {
		b.Run("batch="+strconv.Itoa(size), func(b *testing.B) {
			benchSave(b, openSQLiteT(b, b.TempDir()+"/bench.db"), size)
		})
	}
}

func benchSave(b *testing.B, s Store, size int) {
	ctx := context.Background()
	batch := make([]NewMessage, size)
	n := 0
	for b.Loop() {
		for i := range batch {
			n++
			batch[i] = NewMessage{From: "v" + strconv.Itoa(n%100), To: "agent", Text: "benchmark message",
				Kind: KindText, CMID: strconv.Itoa(n)}
		}
		if _, err := s.SaveMessages(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}
