package web_test

import (
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// catalogs are the UI languages; every string of the widget and the
// console is in each.
var catalogs = []string{"zh-CN", "en"}

func loadCatalog(t *testing.T, lang string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("static/i18n/" + lang + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]string
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s.json: %v", lang, err)
	}
	return c
}

// dynamicKeys are the keys the pages build from server values: presences,
// message and conversation states, connection states, the widget's reply
// expectations, system line codes, error codes (the chat's, the desk's and
// the upload endpoint's).
func dynamicKeys() []string {
	var keys []string
	add := func(prefix string, names ...string) {
		for _, n := range names {
			keys = append(keys, prefix+n)
		}
	}
	add("presence.", "online", "away", "offline")
	add("state.", "sending", "sent", "read", "failed", "received")
	add("state.conv_", "new", "queued", "open", "closed")
	add("conn.", "connecting", "online", "reconnecting")
	add("widget.expect_", "now", "away", "queue", "soon", "offline")
	add("system.", "assigned", "transferred", "closed", "unknown")
	add("error.",
		// the chat
		"invalid_json", "binary_frame", "missing_type", "unknown_type", "missing_field", "invalid_field",
		"client_id_mismatch", "token_required", "token_expired", "token_invalid", "token_mismatch", "not_bound",
		"forbidden", "store_failed", "unavailable", "rate_limited",
		// the desk
		"not_agent", "not_assigned", "not_found", "agent_unavailable",
		// uploads
		"image_too_large", "image_dimensions", "image_type", "image_invalid", "image_empty", "upload_failed")
	return keys
}

// TestCatalogs: both catalogs have exactly the same keys, none empty but
// state.received; the pages use only keys the catalogs have; placeholders
// agree between languages.
func TestCatalogs(t *testing.T) {
	zh, en := loadCatalog(t, catalogs[0]), loadCatalog(t, catalogs[1])
	zhKeys, enKeys := slices.Sorted(maps.Keys(zh)), slices.Sorted(maps.Keys(en))
	if !slices.Equal(zhKeys, enKeys) {
		for _, k := range zhKeys {
			if _, ok := en[k]; !ok {
				t.Errorf("en lacks %s", k)
			}
		}
		for _, k := range enKeys {
			if _, ok := zh[k]; !ok {
				t.Errorf("zh-CN lacks %s", k)
			}
		}
	}
	param := regexp.MustCompile(`\{\w+\}`)
	for k, v := range zh {
		if v == "" && k != "state.received" {
			t.Errorf("zh-CN %s is empty", k)
		}
		if a, b := slices.Sorted(slices.Values(param.FindAllString(v, -1))), slices.Sorted(slices.Values(param.FindAllString(en[k], -1))); !slices.Equal(a, b) {
			t.Errorf("%s: zh-CN has parameters %v, en %v", k, a, b)
		}
	}
	used := map[string]bool{}
	for _, k := range dynamicKeys() {
		used[k] = true
	}
	// Every key-shaped string literal in the scripts (prefixes that are
	// completed at run time end in "." or "_" and are dynamicKeys).
	literal := regexp.MustCompile(`'((?:common|presence|state|conn|widget|system|console|error)\.[a-z0-9_.-]*[a-z0-9])'`)
	attr := regexp.MustCompile(`data-i18n(?:-label|-placeholder)?="([^"]+)"`)
	for _, file := range []string{"static/widget.js", "static/agent.js", "static/agent.html"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range []*regexp.Regexp{literal, attr} {
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				used[m[1]] = true
			}
		}
	}
	for k := range used {
		if _, ok := zh[k]; !ok {
			t.Errorf("the pages use %s, which the catalogs lack", k)
		}
	}
	for k := range zh {
		if !used[k] && !strings.HasPrefix(k, "error.") {
			t.Errorf("catalog key %s is never used", k)
		}
	}
}
