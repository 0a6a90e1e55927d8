package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// deskLockKey is the pg_advisory_xact_lock key that serialises the desk's
// assignment transactions: "gw-desk!" in ASCII.
const deskLockKey int64 = 0x67772d6465736b21

// migrationLockKey is the pg_advisory_xact_lock key that serialises schema
// migrations of every gatewire process on one database: "gatewire" in ASCII.
const migrationLockKey int64 = 0x6761746577697265

// pgMaxAttempts bounds how often SaveMessages runs its insert when
// PostgreSQL aborts it with a deadlock or serialization failure. Two batches
// that retry the same (from, cmid) pairs in opposite orders can deadlock;
// the insert is one atomic statement, so running it again is safe.
const pgMaxAttempts = 4

// Postgres is a Store on PostgreSQL, through a pgx connection pool. It is
// safe for concurrent use.
type Postgres struct {
	pool *pgxpool.Pool
	db   *sql.DB // the pool through database/sql, for the desk
	*deskSQL
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to the PostgreSQL database named by dsn (a
// "postgres://" URL or key=value string, as pgxpool.ParseConfig accepts;
// pool_max_conns and the other pool_* parameters size the pool) and applies
// the embedded migrations. Several processes may open the same database at
// once: migrations run in one transaction holding a transaction-scoped
// advisory lock, so exactly one process applies each of them.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "gatewire"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	if err := migratePostgres(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	s := &Postgres{pool: pool, db: db}
	s.deskSQL = &deskSQL{w: db, r: db, d: dialect{}, begin: func(ctx context.Context, serial bool) (*sql.Tx, error) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil || !serial {
			return tx, err
		}
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, deskLockKey); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
		return tx, nil
	}}
	return s, nil
}

// migratePostgres applies the migrations the database lacks, in one
// transaction that first takes the advisory lock: a concurrent opener waits
// for it, then finds every version recorded and applies nothing.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool) (err error) {
	migs, err := loadMigrations("migrations/postgres")
	if err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	rows, _ := tx.Query(ctx, `SELECT version FROM schema_migrations`)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	applied := make(map[int]bool, len(versions))
	for _, v := range versions {
		applied[int(v)] = true
	}
	for _, m := range migs {
		if applied[m.version] {
			continue
		}
		// No arguments: pgx sends the file with the simple protocol, which
		// runs its several statements.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.version); err != nil {
			return fmt.Errorf("migrate: record %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// pgDelivered is a message row's Delivered: its column, set by MarkRead,
// or a record in message_deliveries.
const pgDelivered = `(delivered OR EXISTS (SELECT 1 FROM message_deliveries d WHERE d.id = messages.id))`

// pgMessageColumns are the columns scanned by scanPgMessage.
const pgMessageColumns = `id, from_uid, to_uid, body, kind, cmid, created_at, ` + pgDelivered + `, read_at, conv`

// pgInsertMessages inserts a batch in one statement. The arrays are the
// batch's from, to, body, kind, cmid and conv, element i being message i; ORDER BY
// ordinality makes the identity values follow input order. A (from_uid,
// cmid) already stored, or repeated earlier in the batch, is skipped and
// returns no row. peer_lo/peer_hi compare in byte order (COLLATE "C"), as
// peers does in Go and SQLite's BINARY collation does.
const pgInsertMessages = `
INSERT INTO messages (from_uid, to_uid, peer_lo, peer_hi, body, kind, cmid, delivered, conv)
SELECT u.from_uid, u.to_uid,
       LEAST(u.from_uid COLLATE "C", u.to_uid COLLATE "C"),
       GREATEST(u.from_uid COLLATE "C", u.to_uid COLLATE "C"),
       u.body, u.kind, u.cmid, false, u.conv
FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::text[])
     WITH ORDINALITY AS u(from_uid, to_uid, body, kind, cmid, conv, ord)
ORDER BY u.ord
ON CONFLICT (from_uid, cmid) WHERE cmid <> '' DO NOTHING
RETURNING id, from_uid, cmid, created_at`

// pgSelectByCMID fetches the stored messages of (from_uid, cmid) pairs; the
// condition on a non-empty cmid lets it use the partial unique index
// messages_cmid.
const pgSelectByCMID = `
SELECT ` + pgMessageColumns + `
FROM messages
WHERE (from_uid, cmid) IN (SELECT * FROM unnest($1::text[], $2::text[]))
  AND cmid <> ''`

// History queries: one index range scan of messages_conversation.
const (
	pgHistoryNewest = `
SELECT ` + pgMessageColumns + `
FROM messages
WHERE peer_lo = $1 AND peer_hi = $2 AND id > $3 AND id < $4
ORDER BY id DESC
LIMIT $5`
	pgHistoryOldest = `
SELECT ` + pgMessageColumns + `
FROM messages
WHERE peer_lo = $1 AND peer_hi = $2 AND id > $3 AND id < $4
ORDER BY id ASC
LIMIT $5`
)

// pgMarkRead and pgUnreadCounts scan the partial index messages_unread.
// Reading implies delivery, so MarkRead sets delivered too.
const (
	pgMarkRead = `
UPDATE messages SET read_at = now(), delivered = true
WHERE to_uid = $1 AND from_uid = $2 AND id <= $3 AND read_at IS NULL`
	pgUnreadCounts = `
SELECT from_uid, count(*)
FROM messages
WHERE to_uid = $1 AND read_at IS NULL
GROUP BY from_uid`
)

// pgInserted is one row returned by pgInsertMessages.
type pgInserted struct {
	id        int64
	from      string
	cmid      string
	createdAt time.Time
}

// SaveMessages implements Store in one INSERT statement per batch, plus one
// SELECT for the stored copies when some (from, cmid) pairs were already
// there.
func (s *Postgres) SaveMessages(ctx context.Context, msgs []NewMessage) ([]Saved, error) {
	if err := checkNewMessages(msgs); err != nil {
		return nil, fmt.Errorf("save messages: %w", err)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	from := make([]string, len(msgs))
	to := make([]string, len(msgs))
	body := make([]string, len(msgs))
	kind := make([]int16, len(msgs))
	cmid := make([]string, len(msgs))
	conv := make([]string, len(msgs))
	for i, m := range msgs {
		from[i], to[i], body[i], kind[i], cmid[i], conv[i] = m.From, m.To, m.Text, int16(m.Kind), m.CMID, m.Conv
	}
	var inserted []pgInserted
	for attempt := 1; ; attempt++ {
		rows, _ := s.pool.Query(ctx, pgInsertMessages, from, to, body, kind, cmid, conv)
		var err error
		inserted, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (pgInserted, error) {
			var r pgInserted
			err := row.Scan(&r.id, &r.from, &r.cmid, &r.createdAt)
			return r, err
		})
		if err == nil {
			break
		}
		if attempt == pgMaxAttempts || !pgRetryable(err) {
			return nil, fmt.Errorf("save messages: insert %d: %w", len(msgs), err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("save messages: insert %d: %w", len(msgs), err)
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}

	out, missing, err := assemble(msgs, inserted)
	if err != nil {
		return nil, fmt.Errorf("save messages: %w", err)
	}
	if len(missing) > 0 {
		mf := make([]string, len(missing))
		mc := make([]string, len(missing))
		for i, k := range missing {
			mf[i], mc[i] = k.from, k.cmid
		}
		rows, _ := s.pool.Query(ctx, pgSelectByCMID, mf, mc)
		stored, err := pgx.CollectRows(rows, scanPgMessage)
		if err != nil {
			return nil, fmt.Errorf("save messages: load %d duplicates: %w", len(missing), err)
		}
		if err := out.resolve(stored); err != nil {
			return nil, fmt.Errorf("save messages: %w", err)
		}
	}
	return out.saved, nil
}

// pgRetryable reports whether err aborted a statement that may simply run
// again: a deadlock or a serialization failure.
func pgRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// cmidKey identifies a message for de-duplication.
type cmidKey struct{ from, cmid string }

// batchResult maps a batch's insert results back to input order.
type batchResult struct {
	msgs  []NewMessage
	saved []Saved
	// first is the index of the first input with each key.
	first map[cmidKey]int
	// dupOf maps a later input to the earlier one with the same key.
	dupOf map[int]int
}

// assemble maps the rows pgInsertMessages returned to the inputs. Rows with
// a cmid are matched by key, rows without one by order: identity values
// follow input order. It returns the keys of first occurrences that were
// skipped as already stored; resolve fills them in.
func assemble(msgs []NewMessage, inserted []pgInserted) (*batchResult, []cmidKey, error) {
	byKey := make(map[cmidKey]pgInserted)
	var plain []pgInserted
	for _, r := range inserted {
		if r.cmid == "" {
			plain = append(plain, r)
			continue
		}
		byKey[cmidKey{r.from, r.cmid}] = r
	}
	sort.Slice(plain, func(i, j int) bool { return plain[i].id < plain[j].id })

	b := &batchResult{
		msgs:  msgs,
		saved: make([]Saved, len(msgs)),
		first: make(map[cmidKey]int),
		dupOf: make(map[int]int),
	}
	var missing []cmidKey
	next := 0
	for i, m := range msgs {
		if m.CMID == "" {
			if next >= len(plain) || plain[next].from != m.From {
				return nil, nil, errors.New("insert returned rows that do not match the batch")
			}
			b.saved[i] = Saved{Message: newStored(m, plain[next].id, plain[next].createdAt)}
			next++
			continue
		}
		k := cmidKey{m.From, m.CMID}
		if j, ok := b.first[k]; ok {
			b.dupOf[i] = j
			continue
		}
		b.first[k] = i
		if r, ok := byKey[k]; ok {
			b.saved[i] = Saved{Message: newStored(m, r.id, r.createdAt)}
		} else {
			missing = append(missing, k)
		}
	}
	if next != len(plain) {
		return nil, nil, errors.New("insert returned rows that do not match the batch")
	}
	if len(missing) == 0 {
		b.fillDups()
	}
	return b, missing, nil
}

// resolve records the stored messages of skipped keys as duplicates.
func (b *batchResult) resolve(stored []Message) error {
	for _, m := range stored {
		if i, ok := b.first[cmidKey{m.From, m.CMID}]; ok && b.saved[i].Message.ID == 0 {
			b.saved[i] = Saved{Message: m, Duplicate: true}
		}
	}
	for _, i := range b.first {
		if b.saved[i].Message.ID == 0 {
			m := b.msgs[i]
			return fmt.Errorf("message %s/%s neither inserted nor found", m.From, m.CMID)
		}
	}
	b.fillDups()
	return nil
}

// fillDups resolves later inputs repeating an earlier key of the batch.
func (b *batchResult) fillDups() {
	for i, j := range b.dupOf {
		b.saved[i] = Saved{Message: b.saved[j].Message, Duplicate: true}
	}
}

// newStored returns the Message that storing m as id at createdAt made.
func newStored(m NewMessage, id int64, createdAt time.Time) Message {
	return Message{
		ID:        id,
		From:      m.From,
		To:        m.To,
		Text:      m.Text,
		Kind:      m.Kind,
		CMID:      m.CMID,
		Conv:      m.Conv,
		CreatedAt: createdAt.UTC(),
	}
}

// scanPgMessage scans pgMessageColumns.
func scanPgMessage(row pgx.CollectableRow) (Message, error) {
	var (
		m      Message
		kind   int16
		readAt *time.Time
	)
	if err := row.Scan(&m.ID, &m.From, &m.To, &m.Text, &kind, &m.CMID, &m.CreatedAt, &m.Delivered, &readAt, &m.Conv); err != nil {
		return Message{}, err
	}
	m.Kind = Kind(kind)
	m.CreatedAt = m.CreatedAt.UTC()
	if readAt != nil {
		m.ReadAt = readAt.UTC()
	}
	return m, nil
}

// Delivery records: a message is delivered when its delivered column is set
// (by MarkRead) or message_deliveries holds its id. Marking inserts into that
// narrow table instead of writing a new version of the message row.
const (
	// pgClaimDelivery records the delivery of an existing message that has
	// none yet and was stored at least $2 microseconds ago; it affects one
	// row when this call recorded it.
	pgClaimDelivery = `
INSERT INTO message_deliveries (id)
SELECT id FROM messages
WHERE id = $1 AND NOT delivered AND created_at <= now() - $2::bigint * interval '1 microsecond'
ON CONFLICT (id) DO NOTHING`
	// pgMarkDelivered records the deliveries of the existing messages
	// among $1. The LIMIT keeps the lookup a subquery the planner cannot
	// flatten into a join, so each id is one primary-key probe whatever the
	// statistics say. Written as a join (or as "id = ANY($1)"), the plan
	// cached for pgx's prepared statement while the table was new and
	// unanalyzed was a hash join over a sequential scan of messages: in a
	// 2,200 say/s run it took 3-4 ms a call, growing with the table, and
	// was most of PostgreSQL's CPU (auto_explain showed the scan).
	pgMarkDelivered = `
INSERT INTO message_deliveries (id)
SELECT m.id FROM unnest($1::bigint[]) AS u(id)
CROSS JOIN LATERAL (SELECT id FROM messages WHERE id = u.id AND NOT delivered LIMIT 1) AS m
ON CONFLICT (id) DO NOTHING`
	// pgUsers loads the users among $1 (TestPostgresGenericPlans checks
	// that it probes the primary key, as pgx's cached plan will).
	pgUsers = `SELECT uid, nickname, avatar_url, role FROM users WHERE uid = ANY($1)`
	// pgReleaseDelivery removes the delivery record of an unread message.
	pgReleaseDelivery = `
DELETE FROM message_deliveries d
USING messages m
WHERE d.id = $1 AND m.id = d.id AND m.read_at IS NULL`
)

// ClaimDelivery implements Store.
func (s *Postgres) ClaimDelivery(ctx context.Context, id int64, minAge time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, pgClaimDelivery, id, max(minAge, 0).Microseconds())
	if err != nil {
		return false, fmt.Errorf("claim delivery of message %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// MarkDelivered implements Store.
func (s *Postgres) MarkDelivered(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, pgMarkDelivered, ids); err != nil {
		return fmt.Errorf("mark %d messages delivered: %w", len(ids), err)
	}
	return nil
}

// ReleaseDelivery implements Store.
func (s *Postgres) ReleaseDelivery(ctx context.Context, id int64) error {
	if _, err := s.pool.Exec(ctx, pgReleaseDelivery, id); err != nil {
		return fmt.Errorf("release delivery of message %d: %w", id, err)
	}
	return nil
}

// History implements Store.
func (s *Postgres) History(ctx context.Context, a, b string, p Page) ([]Message, error) {
	q, err := checkPage(a, b, p)
	if err != nil {
		return nil, fmt.Errorf("load history %s/%s: %w", a, b, err)
	}
	lo, hi := peers(a, b)
	sql := pgHistoryNewest
	if q.ascending {
		sql = pgHistoryOldest
	}
	rows, _ := s.pool.Query(ctx, sql, lo, hi, q.after, q.before, q.limit)
	msgs, err := pgx.CollectRows(rows, scanPgMessage)
	if err != nil {
		return nil, fmt.Errorf("load history %s/%s: %w", a, b, err)
	}
	if !q.ascending {
		reverse(msgs)
	}
	return msgs, nil
}

// reverse reverses msgs in place: newest-first query results become oldest
// first.
func reverse(msgs []Message) {
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
}

// MarkRead implements Store.
func (s *Postgres) MarkRead(ctx context.Context, reader, peer string, upTo int64) (int64, error) {
	if err := checkMarkRead(reader, peer, upTo); err != nil {
		return 0, fmt.Errorf("mark read %s<-%s: %w", reader, peer, err)
	}
	tag, err := s.pool.Exec(ctx, pgMarkRead, reader, peer, upTo)
	if err != nil {
		return 0, fmt.Errorf("mark read %s<-%s: %w", reader, peer, err)
	}
	return tag.RowsAffected(), nil
}

// checkMarkRead validates MarkRead's arguments.
func checkMarkRead(reader, peer string, upTo int64) error {
	if err := checkUID("reader", reader); err != nil {
		return err
	}
	if err := checkUID("peer", peer); err != nil {
		return err
	}
	if upTo < 0 {
		return fmt.Errorf("%w: negative upTo %d", ErrInvalid, upTo)
	}
	return nil
}

// UnreadCounts implements Store.
func (s *Postgres) UnreadCounts(ctx context.Context, uid string) (map[string]int, error) {
	if err := checkUID("uid", uid); err != nil {
		return nil, fmt.Errorf("unread counts %s: %w", uid, err)
	}
	rows, _ := s.pool.Query(ctx, pgUnreadCounts, uid)
	counts := make(map[string]int)
	var (
		from string
		n    int64
	)
	_, err := pgx.ForEachRow(rows, []any{&from, &n}, func() error {
		counts[from] = int(n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("unread counts %s: %w", uid, err)
	}
	return counts, nil
}

// Users implements Store.
func (s *Postgres) Users(ctx context.Context, uids ...string) (map[string]User, error) {
	users := make(map[string]User, len(uids))
	if len(uids) == 0 {
		return users, nil
	}
	for _, uid := range uids {
		if err := checkText("uid", uid); err != nil {
			return nil, fmt.Errorf("load %d users: %w", len(uids), err)
		}
	}
	rows, _ := s.pool.Query(ctx, pgUsers, uids)
	var u User
	_, err := pgx.ForEachRow(rows, []any{&u.UID, &u.Nickname, &u.AvatarURL, &u.Role}, func() error {
		users[u.UID] = u
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %d users: %w", len(uids), err)
	}
	return users, nil
}

// UpsertUsers implements Store in one statement. When a UID appears more
// than once, the last one wins. updated_at changes only with the row.
func (s *Postgres) UpsertUsers(ctx context.Context, users []User) error {
	if err := checkUsers(users); err != nil {
		return fmt.Errorf("upsert users: %w", err)
	}
	users = dedupUsers(users)
	if len(users) == 0 {
		return nil
	}
	uid := make([]string, len(users))
	nick := make([]string, len(users))
	avatar := make([]string, len(users))
	role := make([]string, len(users))
	for i, u := range users {
		uid[i], nick[i], avatar[i], role[i] = u.UID, u.Nickname, u.AvatarURL, string(u.Role)
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO users (uid, nickname, avatar_url, role)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (uid) DO UPDATE
SET nickname = excluded.nickname, avatar_url = excluded.avatar_url, role = excluded.role, updated_at = now()
WHERE (users.nickname, users.avatar_url, users.role) IS DISTINCT FROM (excluded.nickname, excluded.avatar_url, excluded.role)`,
		uid, nick, avatar, role)
	if err != nil {
		return fmt.Errorf("upsert %d users: %w", len(users), err)
	}
	return nil
}

// Close implements Store. It is idempotent.
func (s *Postgres) Close() error {
	_ = s.db.Close()
	s.pool.Close()
	return nil
}
