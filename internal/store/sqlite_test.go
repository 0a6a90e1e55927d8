package store

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sync/errgroup"
)

func openSQLiteT(t testing.TB, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestSQLite(t *testing.T) {
	var paths sync.Map // *SQLite → its file
	testStore(t, func(t *testing.T) Store {
		path := filepath.Join(t.TempDir(), "chat.db")
		s := openSQLiteT(t, path)
		paths.Store(s, path)
		return s
	}, func(t *testing.T, s Store) Store {
		path, _ := paths.Load(s)
		return openSQLiteT(t, path.(string))
	})
}

func sqliteVersions(t *testing.T, s *SQLite) []int {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

func wantVersions(t *testing.T, dir string) []int {
	t.Helper()
	migs, err := loadMigrations(dir)
	if err != nil {
		t.Fatal(err)
	}
	var vs []int
	for _, m := range migs {
		vs = append(vs, m.version)
	}
	return vs
}

func TestSQLiteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	s := openSQLiteT(t, path)
	saved := save(t, s, text("85", "86", "kept"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSQLiteT(t, path)
	sameMessages(t, history(t, s, "85", "86", Page{}), messages(saved))
	if got, want := sqliteVersions(t, s), wantVersions(t, "migrations/sqlite"); !slices.Equal(got, want) {
		t.Fatalf("schema_migrations = %v, want %v", got, want)
	}
	var mode string
	if err := s.r.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := s.w.QueryRowContext(t.Context(), `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys = %d, %v; want 1", fk, err)
	}
}

// TestSQLiteConcurrentOpen opens one new file from 8 stores at once, as 8
// processes starting together would: BEGIN IMMEDIATE lets one migrate.
func TestSQLiteConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	stores := make([]*SQLite, 8)
	var g errgroup.Group
	for i := range stores {
		g.Go(func() error {
			s, err := OpenSQLite(t.Context(), path)
			stores[i] = s
			return err
		})
	}
	err := g.Wait()
	for _, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sqliteVersions(t, stores[0]), wantVersions(t, "migrations/sqlite"); !slices.Equal(got, want) {
		t.Fatalf("schema_migrations = %v, want %v", got, want)
	}
	// Writes from every store land in the one file.
	for i, s := range stores {
		save(t, s, text("85", "86", string(rune('a'+i))))
	}
	if got := history(t, stores[3], "85", "86", Page{}); len(got) != len(stores) {
		t.Fatalf("history has %d messages, want %d", len(got), len(stores))
	}
}

func TestOpenSQLiteRejectsNonFiles(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:chat.db", "chat.db?mode=ro"} {
		if s, err := OpenSQLite(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("OpenSQLite(%q) succeeded", path)
		}
	}
}

// TestSQLitePlans checks that the hot queries search the indexes the schema
// made for them.
func TestSQLitePlans(t *testing.T) {
	s := openSQLiteT(t, filepath.Join(t.TempDir(), "chat.db"))
	for _, tc := range []struct {
		name, sql, index string
		args             []any
	}{
		{"history newest", sqliteHistoryNewest, "messages_conversation", []any{"85", "86", 0, 100, 10}},
		{"history after", sqliteHistoryOldest, "messages_conversation", []any{"85", "86", 0, 100, 10}},
		{"unread counts", sqliteUnreadCounts, "messages_unread", []any{"86"}},
		{"mark read", sqliteMarkRead, "messages_unread", []any{1, "86", "85", 5}},
		{"duplicates", sqliteSelectByCMID, "messages_cmid", []any{"85", "c1"}},
	} {
		rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+tc.sql, tc.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(plan, func(d string) bool {
			return strings.HasPrefix(d, "SEARCH messages USING ") && strings.Contains(d, "INDEX "+tc.index+" ")
		}) {
			t.Errorf("%s: plan %q does not search index %s", tc.name, plan, tc.index)
		}
	}
}
