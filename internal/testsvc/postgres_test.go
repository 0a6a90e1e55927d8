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

func TestPostgresServerRestart(t *testing.T) {
	s := StartPostgres(t)
	ctx := context.Background()
	exec := func(sql string) error {
		c, err := pgx.Connect(ctx, s.DSN())
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, sql)
		return err
	}
	if err := exec(`CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before')`); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := exec(`SELECT 1`); err == nil {
		t.Fatalf("postgres on %s still answers after Stop", s.Addr())
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	c, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatalf("connect after Restart: %v", err)
	}
	defer c.Close(ctx)
	var v string
	if err := c.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != "before" {
		t.Fatalf("the row committed before the restarts reads %q, %v; want \"before\"", v, err)
	}
}
