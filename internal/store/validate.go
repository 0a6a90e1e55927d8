package store

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Limits on identifiers. They keep every index entry far below PostgreSQL's
// B-tree row limit; longer values are rejected with ErrInvalid.
const (
	maxUIDBytes  = 255
	maxCMIDBytes = 255
)

// Page limits.
const (
	defaultPageLimit = 10
	maxPageLimit     = 100
)

// checkText reports whether s can be stored as text by both backends:
// valid UTF-8 without NUL bytes (PostgreSQL text cannot hold NUL).
func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalid, what)
	}
	return nil
}

// checkUID validates a user id: non-empty, at most maxUIDBytes, storable.
func checkUID(what, uid string) error {
	if uid == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	if len(uid) > maxUIDBytes {
		return fmt.Errorf("%w: %s is %d bytes, longer than %d", ErrInvalid, what, len(uid), maxUIDBytes)
	}
	return checkText(what, uid)
}

// checkNewMessages validates a batch before it reaches the database.
func checkNewMessages(msgs []NewMessage) error {
	for i, m := range msgs {
		if err := checkNewMessage(m); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return nil
}

func checkNewMessage(m NewMessage) error {
	if err := checkUID("From", m.From); err != nil {
		return err
	}
	if err := checkUID("To", m.To); err != nil {
		return err
	}
	if m.Kind != KindText && m.Kind != KindImage && m.Kind != KindSystem {
		return fmt.Errorf("%w: unknown Kind %d", ErrInvalid, m.Kind)
	}
	if m.Kind == KindSystem && (m.Conv == "" || m.From != DeskUID) {
		return fmt.Errorf("%w: a system line (Kind 3) belongs to a desk conversation and comes from %q", ErrInvalid, DeskUID)
	}
	if m.Conv != "" && m.Conv != m.From && m.Conv != m.To {
		return fmt.Errorf("%w: Conv %q is neither From nor To", ErrInvalid, m.Conv)
	}
	if len(m.Text) > MaxTextBytes {
		return fmt.Errorf("%w: Text is %d bytes, longer than %d", ErrInvalid, len(m.Text), MaxTextBytes)
	}
	if err := checkText("Text", m.Text); err != nil {
		return err
	}
	if len(m.CMID) > maxCMIDBytes {
		return fmt.Errorf("%w: CMID is %d bytes, longer than %d", ErrInvalid, len(m.CMID), maxCMIDBytes)
	}
	return checkText("CMID", m.CMID)
}

// checkUsers validates users for UpsertUsers.
func checkUsers(users []User) error {
	for i, u := range users {
		if err := checkUser(u); err != nil {
			return fmt.Errorf("user %d: %w", i, err)
		}
	}
	return nil
}

func checkUser(u User) error {
	if err := checkUID("UID", u.UID); err != nil {
		return err
	}
	if u.Role != RoleVisitor && u.Role != RoleAgent {
		return fmt.Errorf("%w: unknown Role %q", ErrInvalid, u.Role)
	}
	if err := checkText("Nickname", u.Nickname); err != nil {
		return err
	}
	return checkText("AvatarURL", u.AvatarURL)
}

// dedupUsers keeps the last of several users with the same UID, in order of
// first appearance: one statement must not upsert a row twice.
func dedupUsers(users []User) []User {
	idx := make(map[string]int, len(users))
	out := make([]User, 0, len(users))
	for _, u := range users {
		if i, ok := idx[u.UID]; ok {
			out[i] = u
			continue
		}
		idx[u.UID] = len(out)
		out = append(out, u)
	}
	return out
}

// peers returns the conversation key of a and b: the two uids in byte order.
func peers(a, b string) (lo, hi string) {
	if a <= b {
		return a, b
	}
	return b, a
}

// pageQuery is a validated Page: messages with after < id < before,
// at most limit of them; ascending selects the oldest, otherwise the newest.
type pageQuery struct {
	after, before int64
	limit         int
	ascending     bool
}

// checkPage validates the conversation and p and fills defaults.
func checkPage(a, b string, p Page) (pageQuery, error) {
	if err := checkUID("uid a", a); err != nil {
		return pageQuery{}, err
	}
	if err := checkUID("uid b", b); err != nil {
		return pageQuery{}, err
	}
	if p.Before < 0 || p.After < 0 || p.Limit < 0 {
		return pageQuery{}, fmt.Errorf("%w: negative page bound (before %d, after %d, limit %d)",
			ErrInvalid, p.Before, p.After, p.Limit)
	}
	q := pageQuery{after: p.After, before: p.Before, limit: p.Limit, ascending: p.After > 0}
	if q.before == 0 {
		q.before = math.MaxInt64
	}
	switch {
	case q.limit == 0:
		q.limit = defaultPageLimit
	case q.limit > maxPageLimit:
		q.limit = maxPageLimit
	}
	return q, nil
}
