package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite" // and its database/sql driver "sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteBusyTimeout is how long a connection waits for another process's
// lock on the database file before failing with SQLITE_BUSY.
const sqliteBusyTimeout = 10 * time.Second

// SQLite is a Store in one SQLite database file (modernc.org/sqlite, pure
// Go), in WAL mode. It is safe for concurrent use.
//
// SQLite allows one writer at a time, so SQLite holds two pools: a write
// pool of exactly one connection, whose transactions all start with BEGIN
// IMMEDIATE (writes queue in database/sql for that connection instead of
// failing with SQLITE_BUSY halfway), and a read pool of several query-only
// connections that read concurrently, in WAL mode also while a write is in
// progress. Other processes using the same file are serialised by SQLite's
// file locks and the busy timeout.
type SQLite struct {
	*deskSQL
	w, r      *sql.DB
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the SQLite database file at path
// and applies the embedded migrations inside BEGIN IMMEDIATE, so that of
// several processes opening the file at once exactly one applies each.
//
// Connections use WAL journaling, synchronous=FULL (a saved message
// survives power loss; one transaction per batch amortises the sync),
// foreign keys on, and a 10s busy timeout. path must name a file: ":memory:"
// and "file:" URIs are rejected, since the two pools must share the data.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("store: open sqlite: %q is not a plain file path", path)
	}
	busy := fmt.Sprintf("_pragma=busy_timeout(%d)", sqliteBusyTimeout.Milliseconds())
	w, err := sql.Open("sqlite", path+"?"+busy+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrateSQLite(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	// Readers open only after the writer switched the file to WAL.
	r, err := sql.Open("sqlite", path+"?"+busy+"&_pragma=foreign_keys(1)&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	n := min(max(runtime.GOMAXPROCS(0), 2), 8)
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	desk := &deskSQL{w: w, r: r, d: dialect{sqlite: true}, begin: func(ctx context.Context, _ bool) (*sql.Tx, error) {
		// One write connection, BEGIN IMMEDIATE: every write is serial.
		return sqliteBegin(ctx, w)
	}}
	return &SQLite{deskSQL: desk, w: w, r: r}, nil
}

// migrateSQLite applies the migrations the database lacks in one
// transaction on the write pool, which begins it IMMEDIATE: the write lock
// is taken before schema_migrations is read.
func migrateSQLite(ctx context.Context, w *sql.DB) error {
	migs, err := loadMigrations("migrations/sqlite")
	if err != nil {
		return err
	}
	return sqliteWrite(ctx, w, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER NOT NULL PRIMARY KEY,
			applied_at INTEGER NOT NULL) STRICT`); err != nil {
			return fmt.Errorf("migrate: create schema_migrations: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return fmt.Errorf("migrate: read schema_migrations: %w", err)
		}
		applied := make(map[int]bool)
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return fmt.Errorf("migrate: read schema_migrations: %w", err)
			}
			applied[v] = true
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("migrate: read schema_migrations: %w", err)
		}
		for _, m := range migs {
			if applied[m.version] {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migrate: apply %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				m.version, time.Now().UnixMicro()); err != nil {
				return fmt.Errorf("migrate: record %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// sqliteWrite runs fn in a write transaction (BEGIN IMMEDIATE) on w and
// commits it, or rolls it back when fn fails.
//
// SQLite's busy handler waits for other connections' locks, except in a few
// cases where BEGIN fails with SQLITE_BUSY at once, notably while several
// processes open a new file and one switches it to WAL. Nothing has happened
// yet when BEGIN fails, so sqliteWrite tries again for up to the busy
// timeout.
func sqliteWrite(ctx context.Context, w *sql.DB, fn func(tx *sql.Tx) error) error {
	tx, err := sqliteBegin(ctx, w)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	return commitWith(tx, fn)
}

// commitWith runs fn in tx and commits, or rolls back when fn fails.
func commitWith(tx *sql.Tx, fn func(tx *sql.Tx) error) error {
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// sqliteBegin begins a write transaction, retrying while SQLite reports
// SQLITE_BUSY without waiting.
func sqliteBegin(ctx context.Context, w *sql.DB) (*sql.Tx, error) {
	deadline := time.Now().Add(sqliteBusyTimeout)
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		tx, err := w.BeginTx(ctx, nil)
		if err == nil || !sqliteBusy(err) || time.Now().After(deadline) {
			return tx, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
	}
}

// sqliteBusy reports whether err is SQLITE_BUSY (any extended code).
func sqliteBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// sqliteMessageColumns are the columns scanned by scanSQLiteMessage.
const sqliteMessageColumns = `id, from_uid, to_uid, body, kind, cmid, created_at, delivered, read_at, conv`

// Statements. History, MarkRead and UnreadCounts use the same indexes as on
// PostgreSQL.
const (
	sqliteInsertMessage = `
INSERT INTO messages (from_uid, to_uid, peer_lo, peer_hi, body, kind, cmid, created_at, delivered, conv)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)
ON CONFLICT (from_uid, cmid) WHERE cmid <> '' DO NOTHING
RETURNING id`
	sqliteSelectByCMID = `
SELECT ` + sqliteMessageColumns + `
FROM messages
WHERE from_uid = ? AND cmid = ? AND cmid <> ''`
	sqliteHistoryNewest = `
SELECT ` + sqliteMessageColumns + `
FROM messages
WHERE peer_lo = ? AND peer_hi = ? AND id > ? AND id < ?
ORDER BY id DESC
LIMIT ?`
	sqliteHistoryOldest = `
SELECT ` + sqliteMessageColumns + `
FROM messages
WHERE peer_lo = ? AND peer_hi = ? AND id > ? AND id < ?
ORDER BY id ASC
LIMIT ?`
	sqliteMarkRead = `
UPDATE messages SET read_at = ?, delivered = 1
WHERE to_uid = ? AND from_uid = ? AND id <= ? AND read_at IS NULL`
	sqliteUnreadCounts = `
SELECT from_uid, count(*)
FROM messages
WHERE to_uid = ? AND read_at IS NULL
GROUP BY from_uid`
)

// SaveMessages implements Store in one transaction per batch, running a
// prepared INSERT ... ON CONFLICT DO NOTHING RETURNING per message and, for
// each skipped duplicate, a SELECT of the stored one.
func (s *SQLite) SaveMessages(ctx context.Context, msgs []NewMessage) ([]Saved, error) {
	if err := checkNewMessages(msgs); err != nil {
		return nil, fmt.Errorf("save messages: %w", err)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	out := make([]Saved, len(msgs))
	err := sqliteWrite(ctx, s.w, func(tx *sql.Tx) error {
		// Taken under the write lock, so created_at follows id order.
		now := time.Now().UTC().Truncate(time.Microsecond)
		ins, err := tx.PrepareContext(ctx, sqliteInsertMessage)
		if err != nil {
			return fmt.Errorf("prepare insert: %w", err)
		}
		defer ins.Close()
		var sel *sql.Stmt
		for i, m := range msgs {
			lo, hi := peers(m.From, m.To)
			var id int64
			err := ins.QueryRowContext(ctx, m.From, m.To, lo, hi, m.Text, int(m.Kind), m.CMID, now.UnixMicro(), m.Conv).Scan(&id)
			if err == nil {
				out[i] = Saved{Message: newStored(m, id, now)}
				continue
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("insert message %d: %w", i, err)
			}
			// Skipped: (From, CMID) is stored, maybe earlier in this batch.
			if sel == nil {
				if sel, err = tx.PrepareContext(ctx, sqliteSelectByCMID); err != nil {
					return fmt.Errorf("prepare select: %w", err)
				}
				defer sel.Close()
			}
			stored, err := scanSQLiteMessage(sel.QueryRowContext(ctx, m.From, m.CMID))
			if err != nil {
				return fmt.Errorf("load duplicate of message %d: %w", i, err)
			}
			out[i] = Saved{Message: stored, Duplicate: true}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("save messages: %w", err)
	}
	return out, nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanSQLiteMessage scans sqliteMessageColumns.
func scanSQLiteMessage(row scanner) (Message, error) {
	var (
		m         Message
		kind      int
		createdAt int64
		readAt    sql.NullInt64
	)
	if err := row.Scan(&m.ID, &m.From, &m.To, &m.Text, &kind, &m.CMID, &createdAt, &m.Delivered, &readAt, &m.Conv); err != nil {
		return Message{}, err
	}
	m.Kind = Kind(kind)
	m.CreatedAt = time.UnixMicro(createdAt).UTC()
	if readAt.Valid {
		m.ReadAt = time.UnixMicro(readAt.Int64).UTC()
	}
	return m, nil
}

// jsonArray encodes v for json_each(?), SQLite's way to pass a list as one
// parameter.
func jsonArray(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// MarkDelivered implements Store.
func (s *SQLite) MarkDelivered(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	err := sqliteWrite(ctx, s.w, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE messages SET delivered = 1 WHERE id = ? AND delivered = 0`, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark %d messages delivered: %w", len(ids), err)
	}
	return nil
}

// ClaimDelivery implements Store.
func (s *SQLite) ClaimDelivery(ctx context.Context, id int64, minAge time.Duration) (bool, error) {
	var n int64
	err := sqliteWrite(ctx, s.w, func(tx *sql.Tx) error {
		storedBy := time.Now().Add(-max(minAge, 0)).UnixMicro()
		res, err := tx.ExecContext(ctx, `UPDATE messages SET delivered = 1 WHERE id = ? AND delivered = 0 AND created_at <= ?`, id, storedBy)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("claim delivery of message %d: %w", id, err)
	}
	return n == 1, nil
}

// ReleaseDelivery implements Store.
func (s *SQLite) ReleaseDelivery(ctx context.Context, id int64) error {
	err := sqliteWrite(ctx, s.w, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE messages SET delivered = 0 WHERE id = ? AND read_at IS NULL`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("release delivery of message %d: %w", id, err)
	}
	return nil
}

// History implements Store.
func (s *SQLite) History(ctx context.Context, a, b string, p Page) ([]Message, error) {
	q, err := checkPage(a, b, p)
	if err != nil {
		return nil, fmt.Errorf("load history %s/%s: %w", a, b, err)
	}
	lo, hi := peers(a, b)
	query := sqliteHistoryNewest
	if q.ascending {
		query = sqliteHistoryOldest
	}
	rows, err := s.r.QueryContext(ctx, query, lo, hi, q.after, q.before, q.limit)
	if err != nil {
		return nil, fmt.Errorf("load history %s/%s: %w", a, b, err)
	}
	defer rows.Close()
	msgs := make([]Message, 0, q.limit)
	for rows.Next() {
		m, err := scanSQLiteMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("load history %s/%s: %w", a, b, err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load history %s/%s: %w", a, b, err)
	}
	if !q.ascending {
		reverse(msgs)
	}
	return msgs, nil
}

// MarkRead implements Store. Reading implies delivery, so it sets delivered
// too.
func (s *SQLite) MarkRead(ctx context.Context, reader, peer string, upTo int64) (int64, error) {
	if err := checkMarkRead(reader, peer, upTo); err != nil {
		return 0, fmt.Errorf("mark read %s<-%s: %w", reader, peer, err)
	}
	var n int64
	err := sqliteWrite(ctx, s.w, func(tx *sql.Tx) error {
		now := time.Now().UTC().Truncate(time.Microsecond)
		res, err := tx.ExecContext(ctx, sqliteMarkRead, now.UnixMicro(), reader, peer, upTo)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mark read %s<-%s: %w", reader, peer, err)
	}
	return n, nil
}

// UnreadCounts implements Store.
func (s *SQLite) UnreadCounts(ctx context.Context, uid string) (map[string]int, error) {
	if err := checkUID("uid", uid); err != nil {
		return nil, fmt.Errorf("unread counts %s: %w", uid, err)
	}
	rows, err := s.r.QueryContext(ctx, sqliteUnreadCounts, uid)
	if err != nil {
		return nil, fmt.Errorf("unread counts %s: %w", uid, err)
	}
	defer rows.Close()
	counts := make(map[string]int)
	for rows.Next() {
		var (
			from string
			n    int
		)
		if err := rows.Scan(&from, &n); err != nil {
			return nil, fmt.Errorf("unread counts %s: %w", uid, err)
		}
		counts[from] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("unread counts %s: %w", uid, err)
	}
	return counts, nil
}

// Users implements Store.
func (s *SQLite) Users(ctx context.Context, uids ...string) (map[string]User, error) {
	users := make(map[string]User, len(uids))
	if len(uids) == 0 {
		return users, nil
	}
	for _, uid := range uids {
		if err := checkText("uid", uid); err != nil {
			return nil, fmt.Errorf("load %d users: %w", len(uids), err)
		}
	}
	list, err := jsonArray(uids)
	if err != nil {
		return nil, fmt.Errorf("load %d users: %w", len(uids), err)
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT uid, nickname, avatar_url, role FROM users WHERE uid IN (SELECT value FROM json_each(?))`, list)
	if err != nil {
		return nil, fmt.Errorf("load %d users: %w", len(uids), err)
	}
	defer rows.Close()
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.UID, &u.Nickname, &u.AvatarURL, &u.Role); err != nil {
			return nil, fmt.Errorf("load %d users: %w", len(uids), err)
		}
		users[u.UID] = u
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load %d users: %w", len(uids), err)
	}
	return users, nil
}

// UpsertUsers implements Store in one transaction. When a UID appears more
// than once, the last one wins. updated_at changes only with the row.
func (s *SQLite) UpsertUsers(ctx context.Context, users []User) error {
	if err := checkUsers(users); err != nil {
		return fmt.Errorf("upsert users: %w", err)
	}
	users = dedupUsers(users)
	if len(users) == 0 {
		return nil
	}
	err := sqliteWrite(ctx, s.w, func(tx *sql.Tx) error {
		now := time.Now().UnixMicro()
		stmt, err := tx.PrepareContext(ctx, `
INSERT INTO users (uid, nickname, avatar_url, role, created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?5)
ON CONFLICT (uid) DO UPDATE
SET nickname = excluded.nickname, avatar_url = excluded.avatar_url, role = excluded.role, updated_at = excluded.updated_at
WHERE (users.nickname, users.avatar_url, users.role) IS NOT (excluded.nickname, excluded.avatar_url, excluded.role)`)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		defer stmt.Close()
		for _, u := range users {
			if _, err := stmt.ExecContext(ctx, u.UID, u.Nickname, u.AvatarURL, string(u.Role), now); err != nil {
				return fmt.Errorf("user %s: %w", u.UID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("upsert %d users: %w", len(users), err)
	}
	return nil
}

// Close implements Store: it closes both pools. It is idempotent.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = errors.Join(s.r.Close(), s.w.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("store: close sqlite: %w", s.closeErr)
		}
	})
	return s.closeErr
}
