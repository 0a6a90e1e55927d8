package app

import (
	"flag"
	"fmt"
	"strings"
	"testing"
)

// TestEffectiveConfigHidesSecrets: the start-up log shows every flag but
// no secret and no Redis password.
func TestEffectiveConfigHidesSecrets(t *testing.T) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var cfg WorkerConfig
	WorkerFlags(fs, &cfg)
	secrets := []string{"inner-s3cret", "push-t0ken", "jwt-secret-0123456789abcdef0123456789", "redis-passw0rd"}
	err := fs.Parse([]string{"-secret", secrets[0], "-push-token", secrets[1], "-jwt-secret", secrets[2],
		"-redis", "redis://user:" + secrets[3] + "@127.0.0.1:6379/0", "-lanes", "7"})
	if err != nil {
		t.Fatal(err)
	}
	shown := fmt.Sprint(effectiveConfig(fs))
	for _, s := range secrets {
		if strings.Contains(shown, s) {
			t.Errorf("effective config %s shows the secret %q", shown, s)
		}
	}
	for _, want := range []string{"lanes=7", "secret=***", "push-token=***", "redis=redis://***@127.0.0.1:6379/0"} {
		if !strings.Contains(shown, want) {
			t.Errorf("effective config %s lacks %s", shown, want)
		}
	}
}
