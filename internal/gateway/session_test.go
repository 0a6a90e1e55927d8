package gateway

import "testing"

func TestMergePatch(t *testing.T) {
	tests := []struct{ doc, patch, want string }{
		{"", `{"a":1}`, `{"a":1}`},
		{`{"a":1,"b":2}`, `{"b":null,"c":3}`, `{"a":1,"c":3}`},
		{`{"a":{"x":1,"y":2}}`, `{"a":{"y":null,"z":3}}`, `{"a":{"x":1,"z":3}}`},
		{`{"a":[1,2]}`, `{"a":[3]}`, `{"a":[3]}`},
		{`{"a":1}`, `{"a":{"b":1}}`, `{"a":{"b":1}}`},
		{`{"a":1}`, `{"a":null}`, ``},
	}
	for _, tt := range tests {
		got, err := mergePatch([]byte(tt.doc), []byte(tt.patch))
		if err != nil || string(got) != tt.want {
			t.Errorf("mergePatch(%s, %s) = %s, %v; want %s", tt.doc, tt.patch, got, err, tt.want)
		}
	}
	for _, bad := range []string{``, `[]`, `1`, `"x"`, `null`, `{`} {
		if _, err := mergePatch(nil, []byte(bad)); err == nil {
			t.Errorf("mergePatch(nil, %q): no error", bad)
		}
	}
}

func TestCheckSession(t *testing.T) {
	for in, want := range map[string]string{``: ``, `{}`: ``, `{"b":1,"a":2}`: `{"a":2,"b":1}`} {
		got, err := checkSession([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("checkSession(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{`[]`, `1`, `null x`} {
		if _, err := checkSession([]byte(bad)); err == nil {
			t.Errorf("checkSession(%q): no error", bad)
		}
	}
}
