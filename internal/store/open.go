package store

import (
	"context"
	"fmt"
	"strings"
)

// Open opens the store a database URL names and applies its migrations:
//
//   - "postgres://..." or "postgresql://...": PostgreSQL (OpenPostgres);
//   - "sqlite:<path>" (also "sqlite://<path>", so "sqlite:///var/lib/chat.db"
//     is an absolute path): SQLite (OpenSQLite);
//   - a plain path ending in ".db", ".sqlite" or ".sqlite3": SQLite.
//
// Anything else is an error that names the accepted forms, never the URL's
// credentials.
func Open(ctx context.Context, url string) (Store, error) {
	lower := strings.ToLower(url)
	switch {
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		s, err := OpenPostgres(ctx, url)
		if err != nil {
			return nil, err
		}
		return s, nil
	case strings.HasPrefix(lower, "sqlite:"):
		path := strings.TrimPrefix(url[len("sqlite:"):], "//")
		if path == "" {
			return nil, fmt.Errorf("store: database URL %q has no file path", url)
		}
		return openSQLite(ctx, path)
	case !strings.Contains(url, "://") &&
		(strings.HasSuffix(lower, ".db") || strings.HasSuffix(lower, ".sqlite") || strings.HasSuffix(lower, ".sqlite3")):
		return openSQLite(ctx, url)
	}
	scheme := "no scheme"
	if i := strings.Index(url, "://"); i > 0 {
		scheme = fmt.Sprintf("scheme %q", url[:i])
	}
	return nil, fmt.Errorf("store: unsupported database URL (%s): want postgres://..., postgresql://..., "+
		"sqlite:<path>, or a file path ending in .db, .sqlite or .sqlite3", scheme)
}

// openSQLite is OpenSQLite returning a Store (never a typed nil).
func openSQLite(ctx context.Context, path string) (Store, error) {
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	return s, nil
}
