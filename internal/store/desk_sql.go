package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// deskSQL implements DeskStore once for both backends, over database/sql
// (PostgreSQL through pgx's stdlib adapter on the store's pool). The SQL is
// written for PostgreSQL; dialect rewrites what SQLite spells differently.
type deskSQL struct {
	w, r *sql.DB // writes, reads (the same pool on PostgreSQL)
	d    dialect
	// begin starts a write transaction; serial ones are serialised with
	// each other (every call that changes who serves a conversation).
	begin func(ctx context.Context, serial bool) (*sql.Tx, error)
}

// dialect is what differs between the two SQL dialects here.
type dialect struct{ sqlite bool }

// q adapts a statement written for PostgreSQL: $n placeholders become ?n
// (numbered, so they may repeat), GREATEST becomes SQLite's scalar max.
func (d dialect) q(s string) string {
	if !d.sqlite {
		return s
	}
	return strings.NewReplacer("$", "?", "GREATEST(", "max(").Replace(s)
}

// t encodes a time: timestamptz on PostgreSQL, INTEGER microseconds on
// SQLite.
func (d dialect) t(t time.Time) any {
	t = t.UTC().Truncate(time.Microsecond)
	if d.sqlite {
		return t.UnixMicro()
	}
	return t
}

// dbTime scans a nullable time of either encoding into *t (zero for NULL).
type dbTime struct{ t *time.Time }

func (s dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*s.t = time.Time{}
	case time.Time:
		*s.t = x.UTC()
	case int64:
		*s.t = time.UnixMicro(x).UTC()
	default:
		return fmt.Errorf("scan time from %T", v)
	}
	return nil
}

// write runs fn in a write transaction and commits it.
func (s *deskSQL) write(ctx context.Context, serial bool, fn func(tx *sql.Tx) error) error {
	tx, err := s.begin(ctx, serial)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	return commitWith(tx, fn)
}

const convColumns = `visitor, state, agent, last_agent, queued_at, assigned_at, first_seen, last_seen, last_msg_id,
	page_url, referrer, user_agent, email`

// prefixed returns cols with each column qualified by alias.
func prefixed(alias, cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = alias + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

func scanConversation(row scanner, extra ...any) (Conversation, error) {
	var (
		c     Conversation
		state string
		agent sql.NullString
	)
	dest := []any{&c.Visitor, &state, &agent, &c.LastAgent, dbTime{&c.QueuedAt}, dbTime{&c.AssignedAt},
		dbTime{&c.FirstSeen}, dbTime{&c.LastSeen}, &c.LastMsgID,
		&c.Info.PageURL, &c.Info.Referrer, &c.Info.UserAgent, &c.Info.Email}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return Conversation{}, err
	}
	c.State, c.Agent = ConversationState(state), agent.String
	return c, nil
}

// messageColumns are the columns scanDeskMessage scans; on PostgreSQL a
// delivery may be recorded in message_deliveries (see pgDelivered).
func (d dialect) messageColumns() string {
	delivered := "delivered"
	if !d.sqlite {
		delivered = pgDelivered
	}
	return `id, from_uid, to_uid, body, kind, cmid, created_at, ` + delivered + `, read_at, conv`
}

func scanDeskMessage(row scanner) (Message, error) {
	var (
		m    Message
		kind int
	)
	if err := row.Scan(&m.ID, &m.From, &m.To, &m.Text, &kind, &m.CMID, dbTime{&m.CreatedAt}, &m.Delivered,
		dbTime{&m.ReadAt}, &m.Conv); err != nil {
		return Message{}, err
	}
	m.Kind = Kind(kind)
	return m, nil
}

// checkInfo validates what the widget reports.
func checkInfo(info VisitorInfo) error {
	for _, f := range []struct{ name, v string }{
		{"PageURL", info.PageURL}, {"Referrer", info.Referrer}, {"UserAgent", info.UserAgent}, {"Email", info.Email},
	} {
		if len(f.v) > maxInfoBytes {
			return fmt.Errorf("%w: %s is %d bytes, longer than %d", ErrInvalid, f.name, len(f.v), maxInfoBytes)
		}
		if err := checkText(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// checkPeople validates uids of a desk call.
func checkPeople(kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if err := checkUID(kv[i], kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (s *deskSQL) TouchVisitor(ctx context.Context, visitor string, info VisitorInfo, now time.Time) (Conversation, error) {
	if err := checkPeople("visitor", visitor); err != nil {
		return Conversation{}, fmt.Errorf("touch visitor: %w", err)
	}
	if err := checkInfo(info); err != nil {
		return Conversation{}, fmt.Errorf("touch visitor %s: %w", visitor, err)
	}
	var c Conversation
	err := s.write(ctx, false, func(tx *sql.Tx) error {
		var err error
		c, err = scanConversation(tx.QueryRowContext(ctx, s.d.q(`
INSERT INTO desk_conversations (visitor, state, first_seen, last_seen, page_url, referrer, user_agent, email)
VALUES ($1, 'new', $2, $2, $3, $4, $5, $6)
ON CONFLICT (visitor) DO UPDATE SET
    last_seen  = excluded.last_seen,
    page_url   = CASE WHEN excluded.page_url <> '' THEN excluded.page_url ELSE desk_conversations.page_url END,
    referrer   = CASE WHEN excluded.referrer <> '' THEN excluded.referrer ELSE desk_conversations.referrer END,
    user_agent = CASE WHEN excluded.user_agent <> '' THEN excluded.user_agent ELSE desk_conversations.user_agent END,
    email      = CASE WHEN excluded.email <> '' THEN excluded.email ELSE desk_conversations.email END
RETURNING `+convColumns),
			visitor, s.d.t(now), info.PageURL, info.Referrer, info.UserAgent, info.Email))
		return err
	})
	if err != nil {
		return Conversation{}, fmt.Errorf("touch visitor %s: %w", visitor, err)
	}
	return c, nil
}

func (s *deskSQL) Conversation(ctx context.Context, visitor string) (Conversation, error) {
	if err := checkPeople("visitor", visitor); err != nil {
		return Conversation{}, fmt.Errorf("load conversation: %w", err)
	}
	c, err := scanConversation(s.r.QueryRowContext(ctx, s.d.q(`SELECT `+convColumns+` FROM desk_conversations WHERE visitor = $1`), visitor))
	if errors.Is(err, sql.ErrNoRows) {
		return Conversation{}, fmt.Errorf("load conversation %s: %w", visitor, ErrNotFound)
	}
	if err != nil {
		return Conversation{}, fmt.Errorf("load conversation %s: %w", visitor, err)
	}
	return c, nil
}

// loadForUpdate reads a conversation inside a serial transaction.
func (s *deskSQL) loadForUpdate(ctx context.Context, tx *sql.Tx, visitor string) (Conversation, error) {
	c, err := scanConversation(tx.QueryRowContext(ctx, s.d.q(`SELECT `+convColumns+` FROM desk_conversations WHERE visitor = $1`), visitor))
	if errors.Is(err, sql.ErrNoRows) {
		return Conversation{}, ErrNotFound
	}
	return c, err
}

// pickAgent chooses who gets a conversation whose last agent was last:
// among online agents with fewer than maxOpen open conversations, last
// first, then the least loaded, then the one assigned least recently. ""
// when nobody has room.
func (s *deskSQL) pickAgent(ctx context.Context, tx *sql.Tx, last string, maxOpen int) (string, error) {
	if maxOpen <= 0 {
		maxOpen = math.MaxInt32
	}
	var agent string
	err := tx.QueryRowContext(ctx, s.d.q(`
SELECT uid FROM (
    SELECT a.uid, a.last_assigned_at,
           (SELECT count(*) FROM desk_conversations c WHERE c.agent = a.uid AND c.state = 'open') AS n
    FROM desk_agents a
    WHERE a.presence = 'online'
) x
WHERE n < $2
ORDER BY CASE WHEN uid = $1 THEN 0 ELSE 1 END, n, last_assigned_at NULLS FIRST, uid
LIMIT 1`), last, maxOpen).Scan(&agent)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return agent, err
}

// give assigns the conversation, which no agent serves, to agent. The
// UPDATE is conditional: it fails with ErrConflict if an agent serves it.
func (s *deskSQL) give(ctx context.Context, tx *sql.Tx, visitor, agent string, now time.Time) (Conversation, error) {
	c, err := scanConversation(tx.QueryRowContext(ctx, s.d.q(`
UPDATE desk_conversations
SET state = 'open', agent = $2, last_agent = $2, assigned_at = $3, queued_at = NULL
WHERE visitor = $1 AND agent IS NULL
RETURNING `+convColumns), visitor, agent, s.d.t(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return Conversation{}, ErrConflict
	}
	if err != nil {
		return Conversation{}, err
	}
	if _, err := tx.ExecContext(ctx, s.d.q(`UPDATE desk_agents SET last_assigned_at = $2 WHERE uid = $1`), agent, s.d.t(now)); err != nil {
		return Conversation{}, err
	}
	return c, nil
}

// assignLocked assigns c inside a serial transaction, or queues it.
func (s *deskSQL) assignLocked(ctx context.Context, tx *sql.Tx, c Conversation, maxOpen int, now time.Time) (Assignment, error) {
	if c.State == ConversationOpen {
		return Assignment{Conversation: c}, nil
	}
	agent, err := s.pickAgent(ctx, tx, c.LastAgent, maxOpen)
	if err != nil {
		return Assignment{}, err
	}
	if agent == "" {
		q, err := scanConversation(tx.QueryRowContext(ctx, s.d.q(`
UPDATE desk_conversations
SET state = 'queued', queued_at = CASE WHEN state = 'queued' THEN queued_at ELSE $2 END
WHERE visitor = $1
RETURNING `+convColumns), c.Visitor, s.d.t(now)))
		return Assignment{Conversation: q}, err
	}
	given, err := s.give(ctx, tx, c.Visitor, agent, now)
	if err != nil {
		return Assignment{}, err
	}
	return Assignment{Conversation: given, Assigned: true}, nil
}

func (s *deskSQL) Assign(ctx context.Context, visitor string, maxOpen int, now time.Time) (Assignment, error) {
	if err := checkPeople("visitor", visitor); err != nil {
		return Assignment{}, fmt.Errorf("assign: %w", err)
	}
	var a Assignment
	err := s.write(ctx, true, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.d.q(`
INSERT INTO desk_conversations (visitor, state, first_seen, last_seen) VALUES ($1, 'new', $2, $2)
ON CONFLICT (visitor) DO NOTHING`), visitor, s.d.t(now)); err != nil {
			return err
		}
		c, err := s.loadForUpdate(ctx, tx, visitor)
		if err != nil {
			return err
		}
		a, err = s.assignLocked(ctx, tx, c, maxOpen, now)
		return err
	})
	if err != nil {
		return Assignment{}, fmt.Errorf("assign %s: %w", visitor, err)
	}
	return a, nil
}

func (s *deskSQL) AssignNext(ctx context.Context, maxOpen int, now time.Time) (Assignment, error) {
	var a Assignment
	err := s.write(ctx, true, func(tx *sql.Tx) error {
		c, err := scanConversation(tx.QueryRowContext(ctx, `SELECT `+convColumns+` FROM desk_conversations
WHERE state = 'queued' ORDER BY queued_at, visitor LIMIT 1`))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		a, err = s.assignLocked(ctx, tx, c, maxOpen, now)
		return err
	})
	if err != nil {
		return Assignment{}, fmt.Errorf("assign next: %w", err)
	}
	return a, nil
}

func (s *deskSQL) Claim(ctx context.Context, visitor, agent string, now time.Time) (Assignment, error) {
	if err := checkPeople("visitor", visitor, "agent", agent); err != nil {
		return Assignment{}, fmt.Errorf("claim: %w", err)
	}
	var a Assignment
	err := s.write(ctx, true, func(tx *sql.Tx) error {
		c, err := s.loadForUpdate(ctx, tx, visitor)
		if err != nil {
			return err
		}
		switch {
		case c.State == ConversationOpen && c.Agent == agent:
			a = Assignment{Conversation: c}
			return nil
		case c.State == ConversationOpen:
			return ErrConflict
		}
		c, err = s.give(ctx, tx, visitor, agent, now)
		a = Assignment{Conversation: c, Assigned: true}
		return err
	})
	if err != nil {
		return Assignment{}, fmt.Errorf("claim %s for %s: %w", visitor, agent, err)
	}
	return a, nil
}

func (s *deskSQL) Transfer(ctx context.Context, visitor, from, to string, now time.Time) (Conversation, error) {
	if err := checkPeople("visitor", visitor, "from", from, "to", to); err != nil {
		return Conversation{}, fmt.Errorf("transfer: %w", err)
	}
	var c Conversation
	err := s.write(ctx, true, func(tx *sql.Tx) error {
		var presence string
		err := tx.QueryRowContext(ctx, s.d.q(`SELECT presence FROM desk_agents WHERE uid = $1`), to).Scan(&presence)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && (presence != string(PresenceOnline) || to == from)) {
			return ErrUnavailable
		}
		if err != nil {
			return err
		}
		c, err = scanConversation(tx.QueryRowContext(ctx, s.d.q(`
UPDATE desk_conversations SET agent = $3, last_agent = $3, assigned_at = $4
WHERE visitor = $1 AND state = 'open' AND agent = $2
RETURNING `+convColumns), visitor, from, to, s.d.t(now)))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrConflict
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.d.q(`UPDATE desk_agents SET last_assigned_at = $2 WHERE uid = $1`), to, s.d.t(now))
		return err
	})
	if err != nil {
		return Conversation{}, fmt.Errorf("transfer %s from %s to %s: %w", visitor, from, to, err)
	}
	return c, nil
}

func (s *deskSQL) CloseConversation(ctx context.Context, visitor, agent string, now time.Time) (Conversation, error) {
	if err := checkPeople("visitor", visitor, "agent", agent); err != nil {
		return Conversation{}, fmt.Errorf("close conversation: %w", err)
	}
	var c Conversation
	err := s.write(ctx, true, func(tx *sql.Tx) error {
		var err error
		c, err = scanConversation(tx.QueryRowContext(ctx, s.d.q(`
UPDATE desk_conversations SET state = 'closed', agent = NULL
WHERE visitor = $1 AND state = 'open' AND agent = $2
RETURNING `+convColumns), visitor, agent))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrConflict
		}
		return err
	})
	if err != nil {
		return Conversation{}, fmt.Errorf("close conversation %s by %s: %w", visitor, agent, err)
	}
	return c, nil
}

func (s *deskSQL) NoteActivity(ctx context.Context, visitor string, msgID int64, now time.Time) error {
	if err := checkPeople("visitor", visitor); err != nil {
		return fmt.Errorf("note activity: %w", err)
	}
	err := s.write(ctx, false, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.q(`
INSERT INTO desk_conversations (visitor, state, first_seen, last_seen, last_msg_id) VALUES ($1, 'new', $3, $3, $2)
ON CONFLICT (visitor) DO UPDATE SET last_msg_id = GREATEST(desk_conversations.last_msg_id, excluded.last_msg_id)`),
			visitor, msgID, s.d.t(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("note activity of %s: %w", visitor, err)
	}
	return nil
}

func (s *deskSQL) MarkConversationRead(ctx context.Context, visitor string, byVisitor bool, upTo int64, now time.Time) (int64, error) {
	if err := checkPeople("visitor", visitor); err != nil {
		return 0, fmt.Errorf("mark conversation read: %w", err)
	}
	if upTo < 0 {
		return 0, fmt.Errorf("mark conversation read: %w: negative upTo %d", ErrInvalid, upTo)
	}
	var n int64
	err := s.write(ctx, false, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`
UPDATE messages SET read_at = $4, delivered = TRUE
WHERE conv = $1 AND conv <> '' AND id <= $3 AND read_at IS NULL AND (from_uid = $1) = $2`),
			visitor, !byVisitor, upTo, s.d.t(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mark conversation %s read: %w", visitor, err)
	}
	return n, nil
}

func (s *deskSQL) Conversations(ctx context.Context, f ConversationFilter) ([]ConversationSummary, error) {
	if f.Agent != "" {
		if err := checkPeople("agent", f.Agent); err != nil {
			return nil, fmt.Errorf("list conversations: %w", err)
		}
	}
	switch f.State {
	case "", ConversationNew, ConversationQueued, ConversationOpen, ConversationClosed:
	default:
		return nil, fmt.Errorf("list conversations: %w: unknown state %q", ErrInvalid, f.State)
	}
	if f.Before < 0 || f.Limit < 0 {
		return nil, fmt.Errorf("list conversations: %w: negative bound", ErrInvalid)
	}
	limit := f.Limit
	switch {
	case limit == 0:
		limit = 50
	case limit > 200:
		limit = 200
	}
	before := f.Before
	if before == 0 {
		before = math.MaxInt64
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(`
SELECT `+prefixed("c", convColumns)+`,
       (SELECT count(*) FROM messages u
        WHERE u.conv = c.visitor AND u.conv <> '' AND u.from_uid = c.visitor AND u.read_at IS NULL) AS unread,
       m.id, m.from_uid, m.body, m.kind, m.created_at
FROM desk_conversations c
LEFT JOIN messages m ON m.id = c.last_msg_id
WHERE c.last_msg_id > 0 AND c.last_msg_id < $1
  AND ($2 = '' OR (c.state = 'open' AND c.agent = $2))
  AND ($3 = '' OR c.state = $3)
  AND ($5 = '' OR c.visitor = $5)
ORDER BY c.last_msg_id DESC
LIMIT $4`), before, f.Agent, string(f.State), limit, f.Visitor)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	defer rows.Close()
	var out []ConversationSummary
	for rows.Next() {
		var (
			sum  ConversationSummary
			id   sql.NullInt64
			from sql.NullString
			body sql.NullString
			kind sql.NullInt64
		)
		c, err := scanConversation(rows, &sum.Unread, &id, &from, &body, &kind, dbTime{&sum.Last.CreatedAt})
		if err != nil {
			return nil, fmt.Errorf("list conversations: %w", err)
		}
		sum.Conversation = c
		if id.Valid {
			sum.Last.ID, sum.Last.From, sum.Last.Text, sum.Last.Kind, sum.Last.Conv = id.Int64, from.String, body.String, Kind(kind.Int64), c.Visitor
		}
		out = append(out, sum)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	return out, nil
}

func (s *deskSQL) ConversationHistory(ctx context.Context, visitor string, p Page) ([]Message, error) {
	q, err := checkPage(visitor, DeskUID, p)
	if err != nil {
		return nil, fmt.Errorf("load conversation history %s: %w", visitor, err)
	}
	order := "DESC"
	if q.ascending {
		order = "ASC"
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT `+s.d.messageColumns()+` FROM messages
WHERE conv = $1 AND conv <> '' AND id > $2 AND id < $3
ORDER BY id `+order+` LIMIT $4`), visitor, q.after, q.before, q.limit)
	if err != nil {
		return nil, fmt.Errorf("load conversation history %s: %w", visitor, err)
	}
	defer rows.Close()
	msgs := make([]Message, 0, q.limit)
	for rows.Next() {
		m, err := scanDeskMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("load conversation history %s: %w", visitor, err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load conversation history %s: %w", visitor, err)
	}
	if !q.ascending {
		reverse(msgs)
	}
	return msgs, nil
}

func (s *deskSQL) QueuePosition(ctx context.Context, visitor string) (int, error) {
	if err := checkPeople("visitor", visitor); err != nil {
		return 0, fmt.Errorf("queue position: %w", err)
	}
	var n int
	err := s.r.QueryRowContext(ctx, s.d.q(`
SELECT count(*) FROM desk_conversations q, desk_conversations c
WHERE c.visitor = $1 AND c.state = 'queued' AND q.state = 'queued'
  AND (q.queued_at < c.queued_at OR (q.queued_at = c.queued_at AND q.visitor <= c.visitor))`), visitor).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("queue position of %s: %w", visitor, err)
	}
	return n, nil
}

// release returns an agent's open conversations to the queue.
func (s *deskSQL) release(ctx context.Context, tx *sql.Tx, agent string, now time.Time) ([]string, error) {
	rows, err := tx.QueryContext(ctx, s.d.q(`
UPDATE desk_conversations SET state = 'queued', agent = NULL, queued_at = $2
WHERE agent = $1 AND state = 'open'
RETURNING visitor`), agent, s.d.t(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var visitors []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		visitors = append(visitors, v)
	}
	return visitors, rows.Err()
}

func (s *deskSQL) SetPresence(ctx context.Context, agent string, p Presence, now time.Time) (bool, []string, error) {
	if err := checkPeople("agent", agent); err != nil {
		return false, nil, fmt.Errorf("set presence: %w", err)
	}
	if p != PresenceOnline && p != PresenceAway && p != PresenceOffline {
		return false, nil, fmt.Errorf("set presence: %w: unknown presence %q", ErrInvalid, p)
	}
	var (
		changed  bool
		released []string
	)
	err := s.write(ctx, p == PresenceOffline, func(tx *sql.Tx) error {
		var old string
		err := tx.QueryRowContext(ctx, s.d.q(`SELECT presence FROM desk_agents WHERE uid = $1`), agent).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			old, err = string(PresenceOffline), nil
		}
		if err != nil {
			return err
		}
		changed = old != string(p)
		if _, err := tx.ExecContext(ctx, s.d.q(`
INSERT INTO desk_agents (uid, presence, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (uid) DO UPDATE SET presence = excluded.presence, lost_at = NULL, updated_at = excluded.updated_at`),
			agent, string(p), s.d.t(now)); err != nil {
			return err
		}
		if p == PresenceOffline {
			released, err = s.release(ctx, tx, agent, now)
		}
		return err
	})
	if err != nil {
		return false, nil, fmt.Errorf("set presence of %s: %w", agent, err)
	}
	return changed, released, nil
}

func (s *deskSQL) Agents(ctx context.Context) ([]AgentStatus, error) {
	rows, err := s.r.QueryContext(ctx, `
SELECT u.uid, u.nickname, u.avatar_url, COALESCE(a.presence, 'offline'),
       (SELECT count(*) FROM desk_conversations c WHERE c.agent = u.uid AND c.state = 'open')
FROM users u LEFT JOIN desk_agents a ON a.uid = u.uid
WHERE u.role = 'agent'
ORDER BY u.uid`)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	var out []AgentStatus
	for rows.Next() {
		a := AgentStatus{User: User{Role: RoleAgent}}
		var p string
		if err := rows.Scan(&a.UID, &a.Nickname, &a.AvatarURL, &p, &a.Open); err != nil {
			return nil, fmt.Errorf("list agents: %w", err)
		}
		a.Presence = Presence(p)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return out, nil
}

func (s *deskSQL) AgentsConnected(ctx context.Context, agents []string) error {
	if len(agents) == 0 {
		return nil
	}
	err := s.write(ctx, false, func(tx *sql.Tx) error {
		for _, a := range agents {
			if _, err := tx.ExecContext(ctx, s.d.q(`UPDATE desk_agents SET lost_at = NULL WHERE uid = $1 AND lost_at IS NOT NULL`), a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("agents connected: %w", err)
	}
	return nil
}

func (s *deskSQL) AgentsDisconnected(ctx context.Context, agents []string, now time.Time) error {
	if len(agents) == 0 {
		return nil
	}
	err := s.write(ctx, false, func(tx *sql.Tx) error {
		for _, a := range agents {
			if _, err := tx.ExecContext(ctx, s.d.q(`UPDATE desk_agents SET lost_at = $2
WHERE uid = $1 AND lost_at IS NULL AND presence <> 'offline'`), a, s.d.t(now)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("agents disconnected: %w", err)
	}
	return nil
}

func (s *deskSQL) ExpireAgents(ctx context.Context, lostBefore, now time.Time) ([]PresenceChange, error) {
	var changes []PresenceChange
	err := s.write(ctx, true, func(tx *sql.Tx) error {
		changes = nil
		rows, err := tx.QueryContext(ctx, s.d.q(`
UPDATE desk_agents SET presence = 'offline', lost_at = NULL, updated_at = $2
WHERE lost_at IS NOT NULL AND lost_at <= $1 AND presence <> 'offline'
RETURNING uid`), s.d.t(lostBefore), s.d.t(now))
		if err != nil {
			return err
		}
		var agents []string
		for rows.Next() {
			var a string
			if err := rows.Scan(&a); err != nil {
				rows.Close()
				return err
			}
			agents = append(agents, a)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, a := range agents {
			released, err := s.release(ctx, tx, a, now)
			if err != nil {
				return err
			}
			changes = append(changes, PresenceChange{Agent: a, Released: released})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expire agents: %w", err)
	}
	return changes, nil
}

// checkImageID validates an image id: 1 to 64 lowercase letters and
// digits (so it is also a safe file name).
func checkImageID(id string) error {
	if id == "" || len(id) > 64 || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyz") != "" {
		return fmt.Errorf("%w: image ID %q is not 1 to 64 lowercase letters and digits", ErrInvalid, id)
	}
	return nil
}

// checkImage validates an image before it is stored.
func checkImage(img Image) error {
	if err := checkImageID(img.ID); err != nil {
		return err
	}
	if err := checkUID("Owner", img.Owner); err != nil {
		return err
	}
	if len(img.Data) == 0 || len(img.Data) > MaxImageBytes {
		return fmt.Errorf("%w: image of %d bytes (want 1 to %d)", ErrInvalid, len(img.Data), MaxImageBytes)
	}
	if len(img.Thumb) == 0 || len(img.Thumb) > MaxImageBytes {
		return fmt.Errorf("%w: thumbnail of %d bytes", ErrInvalid, len(img.Thumb))
	}
	for _, ct := range []string{img.ContentType, img.ThumbType} {
		if !strings.HasPrefix(ct, "image/") || len(ct) > 64 || !utf8.ValidString(ct) {
			return fmt.Errorf("%w: content type %q", ErrInvalid, ct)
		}
	}
	if img.Width <= 0 || img.Height <= 0 {
		return fmt.Errorf("%w: image size %dx%d", ErrInvalid, img.Width, img.Height)
	}
	return nil
}

func (s *deskSQL) SaveImage(ctx context.Context, img Image) error {
	if err := checkImage(img); err != nil {
		return fmt.Errorf("save image: %w", err)
	}
	if img.CreatedAt.IsZero() {
		img.CreatedAt = time.Now()
	}
	err := s.write(ctx, false, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.q(`
INSERT INTO desk_images (id, owner, content_type, data, thumb_type, thumb, width, height, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`),
			img.ID, img.Owner, img.ContentType, img.Data, img.ThumbType, img.Thumb, img.Width, img.Height, s.d.t(img.CreatedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("save image %s: %w", img.ID, err)
	}
	return nil
}

func (s *deskSQL) Image(ctx context.Context, id string, thumb bool) (Image, error) {
	cols := "content_type, data"
	if thumb {
		cols = "thumb_type, thumb"
	}
	img := Image{ID: id}
	err := s.r.QueryRowContext(ctx, s.d.q(`SELECT owner, `+cols+`, width, height, created_at FROM desk_images WHERE id = $1`), id).
		Scan(&img.Owner, &img.ContentType, &img.Data, &img.Width, &img.Height, dbTime{&img.CreatedAt})
	if errors.Is(err, sql.ErrNoRows) {
		return Image{}, fmt.Errorf("load image %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Image{}, fmt.Errorf("load image %s: %w", id, err)
	}
	if thumb {
		img.ThumbType, img.Thumb = img.ContentType, img.Data
	}
	return img, nil
}

// checkCanned validates a canned reply.
func checkCanned(r CannedReply) error {
	if r.Shortcut == "" || len(r.Shortcut) > maxShortcut || strings.ContainsFunc(r.Shortcut, func(c rune) bool {
		return !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z')
	}) {
		return fmt.Errorf("%w: shortcut %q is not 1 to %d of a-z, 0-9, - and _", ErrInvalid, r.Shortcut, maxShortcut)
	}
	if r.Body == "" || len(r.Body) > maxCannedBody {
		return fmt.Errorf("%w: body of %d bytes (want 1 to %d)", ErrInvalid, len(r.Body), maxCannedBody)
	}
	return checkText("Body", r.Body)
}

func (s *deskSQL) CannedReplies(ctx context.Context) ([]CannedReply, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT shortcut, body FROM desk_canned ORDER BY shortcut`)
	if err != nil {
		return nil, fmt.Errorf("list canned replies: %w", err)
	}
	defer rows.Close()
	var out []CannedReply
	for rows.Next() {
		var r CannedReply
		if err := rows.Scan(&r.Shortcut, &r.Body); err != nil {
			return nil, fmt.Errorf("list canned replies: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list canned replies: %w", err)
	}
	return out, nil
}

func (s *deskSQL) SaveCannedReply(ctx context.Context, r CannedReply, now time.Time) error {
	if err := checkCanned(r); err != nil {
		return fmt.Errorf("save canned reply: %w", err)
	}
	err := s.write(ctx, false, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.q(`
INSERT INTO desk_canned (shortcut, body, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (shortcut) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`),
			r.Shortcut, r.Body, s.d.t(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("save canned reply %s: %w", r.Shortcut, err)
	}
	return nil
}

func (s *deskSQL) DeleteCannedReply(ctx context.Context, shortcut string) error {
	var n int64
	err := s.write(ctx, false, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`DELETE FROM desk_canned WHERE shortcut = $1`), shortcut)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("delete canned reply %s: %w", shortcut, err)
	}
	if n == 0 {
		return fmt.Errorf("delete canned reply %s: %w", shortcut, ErrNotFound)
	}
	return nil
}
