package app

import (
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestREADMEFlagTable: the README's flag table lists exactly the flags each
// program has, with their environment variables.
func TestREADMEFlagTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "\n## Flags\n")
	if start < 0 {
		t.Fatal("README has no Flags section")
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	roles := []string{"register", "gateway", "worker", "allinone"}
	documented := map[string][]string{} // role → flags
	nameRE := regexp.MustCompile("`-([a-z0-9-]+)`")
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `-") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 8 {
			t.Fatalf("flag row %q has %d cells", line, len(cells))
		}
		names, _, _ := strings.Cut(cells[1], " (") // the description may name other flags
		for _, m := range nameRE.FindAllStringSubmatch(names, -1) {
			env := "GATEWIRE_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
			if !strings.Contains(cells[2], "`"+env+"`") {
				t.Errorf("README row of -%s does not name %s", m[1], env)
			}
			for i, role := range roles {
				if strings.TrimSpace(cells[3+i]) != "" {
					documented[role] = append(documented[role], m[1])
				}
			}
		}
	}
	registered := map[string]func(*flag.FlagSet){
		"register": func(fs *flag.FlagSet) { RegisterFlags(fs, &RegisterConfig{}) },
		"gateway":  func(fs *flag.FlagSet) { GatewayFlags(fs, &GatewayConfig{}) },
		"worker":   func(fs *flag.FlagSet) { WorkerFlags(fs, &WorkerConfig{}) },
		"allinone": func(fs *flag.FlagSet) { AllInOneFlags(fs, &AllInOneConfig{}) },
	}
	for _, role := range roles {
		fs := flag.NewFlagSet(role, flag.ContinueOnError)
		registered[role](fs)
		LogFlags(fs)
		GCFlags(fs)
		var have []string
		fs.VisitAll(func(f *flag.Flag) { have = append(have, f.Name) })
		want := documented[role]
		slices.Sort(want)
		if !slices.Equal(have, want) {
			t.Errorf("%s: flags %v, README documents %v", role, have, want)
		}
	}
}
