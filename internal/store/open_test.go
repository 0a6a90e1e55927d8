package store

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenSQLiteURLs(t *testing.T) {
	dir := t.TempDir()
	for _, url := range []string{
		"sqlite:" + filepath.Join(dir, "a.db"),
		"sqlite://" + filepath.Join(dir, "b.db"), // sqlite:///abs/path
		"SQLite:" + filepath.Join(dir, "c"),
		filepath.Join(dir, "d.sqlite"),
		filepath.Join(dir, "e.sqlite3"),
		filepath.Join(dir, "f.db"),
	} {
		s, err := Open(t.Context(), url)
		if err != nil {
			t.Errorf("Open(%q): %v", url, err)
			continue
		}
		if _, ok := s.(*SQLite); !ok {
			t.Errorf("Open(%q) = %T, want *SQLite", url, s)
		}
		if _, err := s.SaveMessages(t.Context(), []NewMessage{text("85", "86", "hi")}); err != nil {
			t.Errorf("Open(%q): save: %v", url, err)
		}
		s.Close()
	}
}

func TestOpenBadURLs(t *testing.T) {
	for _, url := range []string{
		"",
		"mysql://root:secret@127.0.0.1/chat",
		"sqlite:",
		"sqlite://",
		"chat.txt",
		"http://example.com/chat.db",
		"postgres://postgres:secret@127.0.0.1:1/chat?sslmode=bogus",
	} {
		s, err := Open(t.Context(), url)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", url)
			continue
		}
		if s != nil {
			t.Errorf("Open(%q) returned a non-nil Store with error %v", url, err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error shows the password: %v", url, err)
		}
		t.Logf("Open(%q): %v", url, err)
	}
}
