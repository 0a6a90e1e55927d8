package flagenv

import (
	"flag"
	"testing"
)

func TestEnvironmentAndFlags(t *testing.T) {
	t.Setenv("GW_WS_ADDR", "127.0.0.1:9")
	t.Setenv("GW_PING_MISSES", "7")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	addr := fs.String("ws-addr", "def", "address")
	misses := fs.Int("ping-misses", 2, "misses")
	other := fs.String("other", "keep", "untouched")
	if err := Parse(fs, "GW", []string{"-ping-misses", "3"}); err != nil {
		t.Fatal(err)
	}
	if *addr != "127.0.0.1:9" || *misses != 3 || *other != "keep" {
		t.Fatalf("got addr=%q misses=%d other=%q", *addr, *misses, *other)
	}
	if u := fs.Lookup("ws-addr").Usage; u != "address (env GW_WS_ADDR)" {
		t.Fatalf("usage = %q", u)
	}
}

func TestBadEnvironmentValue(t *testing.T) {
	t.Setenv("GW_N", "many")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Int("n", 1, "n")
	if err := Parse(fs, "GW", nil); err == nil {
		t.Fatal("want an error for a non-integer value")
	}
}
