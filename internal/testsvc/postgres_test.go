package testsvc

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestPostgresStarts(t *testing.T) {
	dsn := Postgres(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v string
	if err := c.QueryRow(ctx, "select version()").Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Log(v)
}
