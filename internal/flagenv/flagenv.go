// Package flagenv gives every command-line flag an environment-variable
// equivalent: flag -foo-bar of a program with prefix GATEWIRE is also read
// from GATEWIRE_FOO_BAR. A flag given on the command line wins over the
// environment.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Name returns the environment variable that sets flag name.
func Name(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse sets fs's flags from the environment, then parses args over them.
// Each flag's usage text gains the name of its variable.
func Parse(fs *flag.FlagSet, prefix string, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := Name(prefix, f.Name)
		f.Usage += " (env " + env + ")"
		v, ok := os.LookupEnv(env)
		if !ok || err != nil {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("environment variable %s: %w", env, e)
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}
