package clientid

import (
	"errors"
	"testing"
)

func TestMakeAndGatewayOf(t *testing.T) {
	gw := NewGatewayID()
	if !ValidGatewayID(gw) {
		t.Fatalf("NewGatewayID() = %q is not valid", gw)
	}
	a, b := Make(gw, 1), Make(gw, 2)
	if a == b || len(a) != Len {
		t.Fatalf("Make gave %q and %q", a, b)
	}
	got, err := GatewayOf(a)
	if err != nil || got != gw {
		t.Fatalf("GatewayOf(%q) = %q, %v; want %q", a, got, err, gw)
	}
	if NewGatewayID() == gw {
		t.Fatal("two gateway ids are equal")
	}
}

func TestGatewayOfRejectsGarbage(t *testing.T) {
	for _, s := range []string{"", "abc", "zz" + Make(NewGatewayID(), 1)[2:], Make(NewGatewayID(), 1) + "0"} {
		if _, err := GatewayOf(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("GatewayOf(%q) err = %v, want ErrInvalid", s, err)
		}
	}
}
