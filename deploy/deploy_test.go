// Package deploy_test checks the deployment files under deploy/: every YAML
// file parses, the Kubernetes manifests hang together (probes, non-root,
// Service ports, disruption budgets, shutdown timing), the compose file, the
// Prometheus targets and the nginx upstreams name each other consistently,
// nginx accepts its configuration and proxies WebSockets through it, and
// systemd accepts the units.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"sigs.k8s.io/yaml"
)

// Defaults of the processes that the files must agree with.
const (
	drainTimeout = 10 * time.Second // gateway -drain-timeout
	pingInterval = 25 * time.Second // gateway -ping-interval
	nginxPath    = "/usr/sbin/nginx"
)

// obj is a decoded YAML mapping.
type obj = map[string]any

// yamlDocs returns the documents of every YAML file under deploy/, by path.
func yamlDocs(t *testing.T) map[string][]obj {
	t.Helper()
	docs := map[string][]obj{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (!strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(b), -1) {
			// Strict: a key given twice is an error, not a silent override.
			j, err := yaml.YAMLToJSONStrict([]byte(doc))
			if err != nil {
				return fmt.Errorf("%s: document %d: %w", path, i+1, err)
			}
			if string(j) == "null" { // only comments
				continue
			}
			var o obj
			if err := json.Unmarshal(j, &o); err != nil {
				return fmt.Errorf("%s: document %d is not a mapping: %w", path, i+1, err)
			}
			docs[path] = append(docs[path], o)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func TestEveryYAMLFileParses(t *testing.T) {
	docs := yamlDocs(t)
	for _, want := range []string{
		"compose/compose.yaml", "prometheus/prometheus.yml", "k8s/kustomization.yaml",
		"k8s/gateway.yaml", "k8s/worker.yaml", "k8s/register.yaml",
		"k8s/configmap.yaml", "k8s/secret.example.yaml", "k8s/namespace.yaml",
	} {
		if len(docs[want]) == 0 {
			t.Errorf("%s: missing or empty", want)
		}
	}
	for path, ds := range docs {
		t.Logf("%s: %d document(s)", path, len(ds))
	}
}

// get walks o along keys (string keys of mappings, int indexes of lists).
func get(o any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := o.(obj)
			if !ok {
				return nil
			}
			o = m[k]
		case int:
			l, ok := o.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			o = l[k]
		}
	}
	return o
}

func str(o any, keys ...any) string { s, _ := get(o, keys...).(string); return s }

func list(o any, keys ...any) []any { l, _ := get(o, keys...).([]any); return l }

func mapping(o any, keys ...any) obj { m, _ := get(o, keys...).(obj); return m }

func num(o any, keys ...any) (float64, bool) { f, ok := get(o, keys...).(float64); return f, ok }

// k8sObjects returns the Kubernetes objects of deploy/k8s (not the
// kustomization), each with the file it comes from.
type k8sObject struct {
	file string
	o    obj
}

func k8sObjects(t *testing.T) []k8sObject {
	t.Helper()
	var objs []k8sObject
	for path, ds := range yamlDocs(t) {
		if filepath.Dir(path) != "k8s" || filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		for _, d := range ds {
			if str(d, "kind") == "" || str(d, "apiVersion") == "" || str(d, "metadata", "name") == "" {
				t.Errorf("%s: an object without kind, apiVersion or metadata.name", path)
			}
			objs = append(objs, k8sObject{path, d})
		}
	}
	slices.SortFunc(objs, func(a, b k8sObject) int {
		return strings.Compare(a.file+str(a.o, "kind")+str(a.o, "metadata", "name"), b.file+str(b.o, "kind")+str(b.o, "metadata", "name"))
	})
	return objs
}

func ofKind(objs []k8sObject, kind string) []k8sObject {
	var r []k8sObject
	for _, o := range objs {
		if str(o.o, "kind") == kind {
			r = append(r, o)
		}
	}
	return r
}

// selects reports whether selector (matchLabels-style) selects labels.
func selects(selector, labels obj) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerPorts returns a container's ports by name and number.
func containerPorts(c any) (byName map[string]int, numbers map[int]bool) {
	byName, numbers = map[string]int{}, map[int]bool{}
	for _, p := range list(c, "ports") {
		n, _ := num(p, "containerPort")
		numbers[int(n)] = true
		if name := str(p, "name"); name != "" {
			byName[name] = int(n)
		}
	}
	return byName, numbers
}

func TestKubernetesManifests(t *testing.T) {
	objs := k8sObjects(t)
	deployments := ofKind(objs, "Deployment")
	var roles []string
	for _, d := range deployments {
		roles = append(roles, str(d.o, "metadata", "name"))
	}
	slices.Sort(roles)
	if want := []string{"gatewire-gateway", "gatewire-register", "gatewire-worker"}; !slices.Equal(roles, want) {
		t.Fatalf("Deployments %v, want %v", roles, want)
	}

	for _, d := range deployments {
		name := str(d.o, "metadata", "name")
		spec := mapping(d.o, "spec", "template", "spec")
		podLabels := mapping(d.o, "spec", "template", "metadata", "labels")
		if !selects(mapping(d.o, "spec", "selector", "matchLabels"), podLabels) {
			t.Errorf("%s: spec.selector does not select the pod template's labels", name)
		}
		if ns := str(d.o, "metadata", "namespace"); ns != "gatewire" {
			t.Errorf("%s: namespace %q, want gatewire", name, ns)
		}
		podNonRoot, _ := get(spec, "securityContext", "runAsNonRoot").(bool)
		podUser, podUserSet := num(spec, "securityContext", "runAsUser")
		containers := list(spec, "containers")
		if len(containers) == 0 {
			t.Errorf("%s: no containers", name)
		}
		for _, c := range containers {
			cname := name + "/" + str(c, "name")
			byName, numbers := containerPorts(c)
			for _, probe := range []string{"readinessProbe", "livenessProbe"} {
				p := mapping(c, probe)
				if p == nil {
					t.Errorf("%s: no %s", cname, probe)
					continue
				}
				port, ok := num(p, "grpc", "port")
				if !ok {
					t.Errorf("%s: %s is not a native grpc: probe", cname, probe)
				} else if !numbers[int(port)] {
					t.Errorf("%s: %s probes port %v, which the container does not expose", cname, probe, port)
				}
			}
			// Non-root: runAsNonRoot at pod or container level, and no
			// runAsUser 0 anywhere.
			nonRoot := podNonRoot
			if v, ok := get(c, "securityContext", "runAsNonRoot").(bool); ok {
				nonRoot = v
			}
			user, userSet := podUser, podUserSet
			if u, ok := num(c, "securityContext", "runAsUser"); ok {
				user, userSet = u, true
			}
			if !nonRoot || (userSet && user == 0) {
				t.Errorf("%s: does not run as non-root (runAsNonRoot %v, runAsUser %v)", cname, nonRoot, user)
			}
			if v, _ := get(c, "securityContext", "allowPrivilegeEscalation").(bool); v || get(c, "securityContext", "allowPrivilegeEscalation") == nil {
				t.Errorf("%s: allowPrivilegeEscalation must be false", cname)
			}
			if v, _ := get(c, "securityContext", "readOnlyRootFilesystem").(bool); !v {
				t.Errorf("%s: readOnlyRootFilesystem must be true", cname)
			}
			if str(c, "resources", "requests", "cpu") == "" || str(c, "resources", "requests", "memory") == "" {
				t.Errorf("%s: resources.requests needs cpu and memory", cname)
			}
			// Every listen address binds 0.0.0.0 on a port the container
			// declares.
			var addrs int
			for _, e := range list(c, "env") {
				ename, value := str(e, "name"), str(e, "value")
				if !strings.HasPrefix(ename, "GATEWIRE_") || !strings.HasSuffix(ename, "_ADDR") {
					continue
				}
				addrs++
				host, port, err := net.SplitHostPort(value)
				p, _ := strconv.Atoi(port)
				if err != nil || host != "0.0.0.0" || !numbers[p] {
					t.Errorf("%s: %s=%q: want 0.0.0.0:<a declared containerPort>", cname, ename, value)
				}
			}
			if addrs == 0 {
				t.Errorf("%s: sets no GATEWIRE_*_ADDR listen address", cname)
			}
			if _, ok := byName["metrics"]; !ok {
				t.Errorf("%s: no port named metrics", cname)
			}
		}

		// Shutdown timing.
		grace, ok := num(spec, "terminationGracePeriodSeconds")
		if !ok {
			t.Errorf("%s: no terminationGracePeriodSeconds", name)
		}
		if name == "gatewire-gateway" {
			c := containers[0]
			trusted := false
			for _, e := range list(c, "env") {
				trusted = trusted || (str(e, "name") == "GATEWIRE_TRUSTED_PROXIES" && str(e, "value") != "")
			}
			if !trusted {
				t.Errorf("%s: behind an Ingress, a gateway needs GATEWIRE_TRUSTED_PROXIES", name)
			}
			sleep, ok := num(c, "lifecycle", "preStop", "sleep", "seconds")
			if !ok {
				t.Errorf("%s: no preStop sleep", name)
			}
			drain := drainTimeout
			for _, e := range list(c, "env") {
				if str(e, "name") == "GATEWIRE_DRAIN_TIMEOUT" {
					var err error
					if drain, err = time.ParseDuration(str(e, "value")); err != nil {
						t.Errorf("%s: GATEWIRE_DRAIN_TIMEOUT: %v", name, err)
					}
				}
			}
			if need := time.Duration(sleep)*time.Second + drain; time.Duration(grace)*time.Second <= need {
				t.Errorf("%s: terminationGracePeriodSeconds %vs must exceed preStop %vs + drain %v", name, grace, sleep, drain)
			}
		}

		// A PodDisruptionBudget covers it.
		var pdbs int
		for _, p := range ofKind(objs, "PodDisruptionBudget") {
			if selects(mapping(p.o, "spec", "selector", "matchLabels"), podLabels) {
				pdbs++
			}
		}
		if pdbs != 1 {
			t.Errorf("%s: %d PodDisruptionBudgets select it, want 1", name, pdbs)
		}
	}

	// Every Service selects a Deployment whose containers have the ports
	// it targets.
	services := ofKind(objs, "Service")
	if len(services) != len(deployments) {
		t.Errorf("%d Services for %d Deployments, want one per role", len(services), len(deployments))
	}
	for _, s := range services {
		name := str(s.o, "metadata", "name")
		var matched int
		for _, d := range deployments {
			if !selects(mapping(s.o, "spec", "selector"), mapping(d.o, "spec", "template", "metadata", "labels")) {
				continue
			}
			matched++
			for _, p := range list(s.o, "spec", "ports") {
				target := get(p, "targetPort")
				if target == nil {
					target = get(p, "port")
				}
				found := false
				for _, c := range list(d.o, "spec", "template", "spec", "containers") {
					byName, numbers := containerPorts(c)
					switch v := target.(type) {
					case string:
						_, found = byName[v]
					case float64:
						found = numbers[int(v)]
					}
					if found {
						break
					}
				}
				if !found {
					t.Errorf("Service %s port %q targets %v, which no container of %s declares", name, str(p, "name"), target, str(d.o, "metadata", "name"))
				}
			}
		}
		if matched != 1 {
			t.Errorf("Service %s selects %d Deployments, want 1", name, matched)
		}
	}

	// Every Secret key and ConfigMap the Deployments use exists in the
	// examples.
	secretKeys := map[string]bool{}
	for _, s := range ofKind(objs, "Secret") {
		for k := range mapping(s.o, "stringData") {
			secretKeys[str(s.o, "metadata", "name")+"/"+k] = true
		}
	}
	configMaps := map[string]bool{}
	for _, c := range ofKind(objs, "ConfigMap") {
		configMaps[str(c.o, "metadata", "name")] = true
		for k := range mapping(c.o, "data") {
			if !strings.HasPrefix(k, "GATEWIRE_") && k != "GODEBUG" {
				t.Errorf("ConfigMap %s: key %s is neither a GATEWIRE_* variable nor GODEBUG", str(c.o, "metadata", "name"), k)
			}
		}
	}
	for _, d := range deployments {
		for _, c := range list(d.o, "spec", "template", "spec", "containers") {
			for _, e := range list(c, "env") {
				dname, ename := str(d.o, "metadata", "name"), str(e, "name")
				ref := mapping(e, "valueFrom", "secretKeyRef")
				if ref != nil && !secretKeys[str(ref, "name")+"/"+str(ref, "key")] {
					t.Errorf("%s: env %s uses secret key %s/%s, not in secret.example.yaml", dname, ename, str(ref, "name"), str(ref, "key"))
				}
				secret := strings.Contains(ename, "SECRET") || strings.Contains(ename, "TOKEN") || ename == "GATEWIRE_STORE"
				if secret && ref == nil {
					t.Errorf("%s: %s must come from a Secret", dname, ename)
				}
			}
			for _, ef := range list(c, "envFrom") {
				if n := str(ef, "configMapRef", "name"); n != "" && !configMaps[n] {
					t.Errorf("%s: envFrom ConfigMap %s does not exist", str(d.o, "metadata", "name"), n)
				}
			}
		}
	}
}

func TestKustomization(t *testing.T) {
	docs := yamlDocs(t)
	k := docs["k8s/kustomization.yaml"][0]
	var listed []string
	for _, r := range list(k, "resources") {
		listed = append(listed, r.(string))
	}
	files, _ := filepath.Glob("k8s/*.yaml")
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" || base == "secret.example.yaml" {
			continue
		}
		if !slices.Contains(listed, base) {
			t.Errorf("kustomization.yaml does not list %s", base)
		}
	}
	for _, r := range listed {
		if _, err := os.Stat(filepath.Join("k8s", r)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
	}
	if slices.Contains(listed, "secret.example.yaml") {
		t.Error("kustomization.yaml must not apply the example Secret")
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not found: `kubectl kustomize` not checked")
	}
	out, err := exec.Command(kubectl, "kustomize", "k8s").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize k8s: %v\n%s", err, out)
	}
	if n := bytes.Count(out, []byte("\nkind: ")) + 1; n < 10 {
		t.Errorf("kubectl kustomize rendered %d objects, want at least 10:\n%s", n, out)
	}
}

// composeServices returns compose.yaml's services.
func composeServices(t *testing.T) obj {
	t.Helper()
	services := mapping(yamlDocs(t)["compose/compose.yaml"][0], "services")
	if services == nil {
		t.Fatal("compose.yaml: no services")
	}
	return services
}

func TestCompose(t *testing.T) {
	services := composeServices(t)
	for _, want := range []string{"redis", "postgres", "register-1", "register-2", "gateway-1", "gateway-2", "worker-1", "worker-2", "nginx"} {
		if services[want] == nil {
			t.Errorf("compose.yaml: no service %s", want)
		}
	}
	if img := str(services, "postgres", "image"); !strings.HasPrefix(img, "postgres:15") {
		t.Errorf("postgres image %q, want postgres:15", img)
	}
	secretVars := []string{"GATEWIRE_SECRET", "GATEWIRE_PUSH_TOKEN", "GATEWIRE_JWT_SECRET", "GATEWIRE_STORE", "POSTGRES_PASSWORD"}
	var gatewire int
	for name, s := range services {
		env := mapping(s, "environment")
		for k, v := range env {
			// Secrets come from the environment, never written here.
			if slices.Contains(secretVars, k) && !strings.Contains(fmt.Sprint(v), "${") {
				t.Errorf("%s: %s is written in compose.yaml; take it from the environment (${...})", name, k)
			}
			if strings.HasSuffix(k, "_ADDR") && strings.HasPrefix(k, "GATEWIRE_") && !strings.HasPrefix(fmt.Sprint(v), "0.0.0.0:") {
				t.Errorf("%s: %s=%v: inside a container bind 0.0.0.0", name, k, v)
			}
		}
		cmd := strings.Join(strings.Fields(fmt.Sprint(get(s, "command"))), " ")
		if !strings.Contains(cmd, "/usr/local/bin/gatewire-") {
			continue
		}
		gatewire++
		if u := str(s, "user"); u == "" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root") {
			t.Errorf("%s: user %q, want a non-root uid", name, u)
		}
		grace, err := time.ParseDuration(str(s, "stop_grace_period"))
		if err != nil || grace <= drainTimeout {
			t.Errorf("%s: stop_grace_period %q must exceed the %v drain timeout", name, str(s, "stop_grace_period"), drainTimeout)
		}
		if env["GATEWIRE_SECRET"] == nil {
			t.Errorf("%s: no GATEWIRE_SECRET", name)
		}
		if strings.HasPrefix(name, "gateway-") && fmt.Sprint(env["GATEWIRE_TRUSTED_PROXIES"]) == "" {
			t.Errorf("%s: behind nginx, a gateway needs GATEWIRE_TRUSTED_PROXIES", name)
		}
	}
	if gatewire != 6 {
		t.Errorf("%d gatewire services, want 6 (2 registers, 2 gateways, 2 workers)", gatewire)
	}
	mounts := fmt.Sprint(get(services, "nginx", "volumes"))
	if !strings.Contains(mounts, "../nginx/gatewire.conf:") {
		t.Errorf("nginx does not mount ../nginx/gatewire.conf: %s", mounts)
	}
}

// upstreamServer matches a host:port member of an nginx upstream block.
var upstreamServer = regexp.MustCompile(`(?m)^(\s*server\s+)([A-Za-z0-9.-]+):(\d+)`)

// TestNamesAgree checks that nginx's upstreams and Prometheus's targets are
// compose services on the ports those services listen on.
func TestNamesAgree(t *testing.T) {
	services := composeServices(t)
	listens := func(service, port string) bool {
		for k, v := range mapping(services, service, "environment") {
			if strings.HasSuffix(k, "_ADDR") && strings.HasSuffix(fmt.Sprint(v), ":"+port) {
				return true
			}
		}
		return false
	}
	conf, err := os.ReadFile("nginx/gatewire.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range upstreamServer.FindAllStringSubmatch(string(conf), -1) {
		if !listens(m[2], m[3]) {
			t.Errorf("nginx upstream %s:%s: no compose service listens there", m[2], m[3])
		}
	}
	prom := yamlDocs(t)["prometheus/prometheus.yml"][0]
	var targets int
	for _, job := range list(prom, "scrape_configs") {
		for _, sc := range list(job, "static_configs") {
			for _, tg := range list(sc, "targets") {
				targets++
				host, port, _ := net.SplitHostPort(tg.(string))
				if !listens(host, port) || !strings.Contains(fmt.Sprint(get(services, host, "environment", "GATEWIRE_METRICS_ADDR")), ":"+port) {
					t.Errorf("prometheus target %s: not a compose service's GATEWIRE_METRICS_ADDR", tg)
				}
			}
		}
	}
	if targets != 6 {
		t.Errorf("%d Prometheus targets, want 6", targets)
	}
}

// needNginx returns nginx's path, skipping the test when it is missing on a
// developer's machine and failing it in CI (CI set).
func needNginx(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(nginxPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found; CI requires it (apt-get install -y nginx): %v", nginxPath, err)
		}
		t.Skipf("%s not found (apt-get install -y nginx): %v", nginxPath, err)
	}
	return nginxPath
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// fakeGateway accepts WebSockets like the gateway (same-origin check of
// coder/websocket, no extra origins) and echoes frames prefixed with its
// name; refuse makes it answer handshakes 503 like a draining gateway.
type fakeGateway struct {
	name    string
	refuse  atomic.Bool
	accepts atomic.Int32
	active  atomic.Int32
	lastXFF atomic.Value
	srv     *httptest.Server
}

func newFakeGateway(t *testing.T, name string) *fakeGateway {
	g := &fakeGateway{name: name}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.refuse.Load() {
			http.Error(w, "gateway is shutting down", http.StatusServiceUnavailable)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		g.accepts.Add(1)
		g.active.Add(1)
		defer g.active.Add(-1)
		g.lastXFF.Store(r.Header.Get("X-Forwarded-For"))
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(g.name+":"), b...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) addr() string { return g.srv.Listener.Addr().String() }

// TestNginxConfig checks deploy/nginx/gatewire.conf with `nginx -t`, then
// runs nginx with it and proxies real WebSockets and page requests through
// it. Only the upstream members (compose service names, which do not
// resolve here) and the listen address are rewritten to local test servers;
// everything else is tested as written.
func TestNginxConfig(t *testing.T) {
	conf, err := os.ReadFile("nginx/gatewire.conf")
	if err != nil {
		t.Fatal(err)
	}
	text := string(conf)
	for _, d := range []string{"proxy_read_timeout", "proxy_send_timeout"} {
		m := regexp.MustCompile(`(?m)^\s*` + d + `\s+(\d+)s;`).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("%s not set in seconds", d)
			continue
		}
		if s, _ := strconv.Atoi(m[1]); time.Duration(s)*time.Second <= 2*pingInterval {
			t.Errorf("%s %ss: want well above the %v ping interval", d, m[1], pingInterval)
		}
	}
	for _, want := range []string{"proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection $gatewire_connection;"} {
		if !strings.Contains(text, want) {
			t.Errorf("gatewire.conf lacks %q", want)
		}
	}
	bin := needNginx(t)

	gw1, gw2 := newFakeGateway(t, "gw1"), newFakeGateway(t, "gw2")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "page %s host=%s", r.URL.RequestURI(), r.Host)
	}))
	t.Cleanup(web.Close)
	members := map[string][]string{ // upstream block → test servers, in order
		"gatewire_gateways": {gw1.addr(), gw2.addr()},
		"gatewire_web":      {web.Listener.Addr().String(), web.Listener.Addr().String()},
	}
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)

	// Rewrite: upstream members in order, and the listen directive.
	var out strings.Builder
	var block string
	used := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if m := regexp.MustCompile(`^\s*upstream\s+(\S+)\s*\{`).FindStringSubmatch(line); m != nil {
			block = m[1]
		} else if strings.TrimSpace(line) == "}" {
			block = ""
		}
		if m := upstreamServer.FindStringSubmatch(line); m != nil && block != "" {
			addrs := members[block]
			if used[block] >= len(addrs) {
				t.Fatalf("upstream %s has more members than the test expects", block)
			}
			line = upstreamServer.ReplaceAllString(line, "${1}"+addrs[used[block]])
			used[block]++
		}
		if regexp.MustCompile(`^\s*listen\s+80;`).MatchString(line) {
			line = "    listen " + listen + ";"
		}
		out.WriteString(line + "\n")
	}
	for b, addrs := range members {
		if used[b] != len(addrs) {
			t.Fatalf("upstream %s: rewrote %d members, want %d", b, used[b], len(addrs))
		}
	}
	if !strings.Contains(out.String(), "listen "+listen+";") {
		t.Fatal("gatewire.conf has no `listen 80;` to rewrite")
	}

	prefix := t.TempDir()
	if err := os.WriteFile(filepath.Join(prefix, "gatewire.conf"), []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/gatewire.conf;
}
`, prefix)
	mainConf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(mainConf, []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", prefix + "/", "-c", mainConf, "-e", filepath.Join(prefix, "error.log")}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	} else {
		t.Logf("nginx -t:\n%s", out)
	}

	// Run it: one process, in the foreground, stopped when the test ends.
	cmd := exec.Command(bin, append(args, "-g", "daemon off; master_process off;")...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", stderr.String(), log)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("nginx does not listen on %s", listen)
		}
		time.Sleep(20 * time.Millisecond)
	}
	base := "http://" + listen

	// A plain request is the chat page, with the client's Host.
	resp, err := http.Get(base + "/?from=85&to=86")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "page /?from=85&to=86 host=" + listen; string(body) != want {
		t.Errorf("GET / through nginx: %q, want %q", body, want)
	}

	// WebSockets go to the gateways, least connections first, with the
	// browser's same-origin check passing (Host kept).
	dial := func() *websocket.Conn {
		t.Helper()
		c, resp, err := websocket.Dial(ctx, "ws://"+listen+"/", &websocket.DialOptions{
			HTTPHeader: http.Header{"Origin": {base}},
		})
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("websocket through nginx: %v (status %d)", err, status)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	echo := func(c *websocket.Conn, msg string) string {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ca, cb := dial(), dial()
	a, b := echo(ca, "hello"), echo(cb, "hello")
	if a == b || !slices.Contains([]string{"gw1:hello", "gw2:hello"}, a) || !slices.Contains([]string{"gw1:hello", "gw2:hello"}, b) {
		t.Fatalf("two open WebSockets answered %q and %q: want one on each gateway", a, b)
	}
	// Close the second; the next one goes where it was (fewest
	// connections), not round-robin to the first's gateway.
	cb.Close(websocket.StatusNormalClosure, "")
	for gw1.active.Load()+gw2.active.Load() != 1 {
		if ctx.Err() != nil {
			t.Fatal("the gateway never saw the proxied close")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := echo(dial(), "hello"); c != b {
		t.Errorf("with one client on each side of %q/%q and the %q one closed, the next went to %q: want least connections", a, b, b, c)
	}
	if xff, _ := gw1.lastXFF.Load().(string); xff != "127.0.0.1" {
		t.Errorf("gateway saw X-Forwarded-For %q, want 127.0.0.1", xff)
	}

	// A draining gateway answers handshakes 503: nginx tries the other.
	gw1.refuse.Store(true)
	before := gw2.accepts.Load()
	for i := range 3 {
		if got := echo(dial(), "again"); got != "gw2:again" {
			t.Errorf("handshake %d while gw1 drains: answered %q, want gw2:again", i, got)
		}
	}
	if gw2.accepts.Load() != before+3 {
		t.Errorf("gw2 accepted %d, want 3", gw2.accepts.Load()-before)
	}
}

// unit is a parsed systemd unit: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestSystemdUnits(t *testing.T) {
	var paths []string
	for _, role := range []string{"register", "gateway", "worker"} {
		path := filepath.Join("systemd", "gatewire-"+role+".service")
		paths = append(paths, path)
		u := parseUnit(t, path)
		if got := u.last("Service", "ExecStart"); got != "/usr/local/bin/gatewire-"+role {
			t.Errorf("%s: ExecStart=%s", path, got)
		}
		if len(u["Service"]["EnvironmentFile"]) == 0 {
			t.Errorf("%s: no EnvironmentFile", path)
		}
		for _, f := range u["Service"]["EnvironmentFile"] {
			example := filepath.Join("systemd", strings.TrimSuffix(filepath.Base(strings.TrimPrefix(f, "-")), ".env")+".env.example")
			if _, err := os.Stat(example); err != nil {
				t.Errorf("%s: EnvironmentFile=%s has no example: %v", path, f, err)
			}
		}
		if got := u.last("Service", "KillSignal"); got != "SIGTERM" {
			t.Errorf("%s: KillSignal=%s, want SIGTERM", path, got)
		}
		stop, err := time.ParseDuration(u.last("Service", "TimeoutStopSec"))
		if err != nil {
			t.Errorf("%s: TimeoutStopSec=%q: %v", path, u.last("Service", "TimeoutStopSec"), err)
		} else if role != "register" && stop <= drainTimeout {
			t.Errorf("%s: TimeoutStopSec=%v must exceed the %v drain timeout", path, stop, drainTimeout)
		}
		for k, want := range map[string]string{
			"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
			"ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
		} {
			if v, ok := u["Service"][k]; !ok || v[len(v)-1] != want {
				t.Errorf("%s: want %s=%s", path, k, want)
			}
		}
		if u.last("Install", "WantedBy") == "" {
			t.Errorf("%s: no [Install] WantedBy", path)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found: `systemd-analyze verify` not run on the units")
	}
	// verify insists that ExecStart's binary exists: point copies of the
	// units at stand-ins. It reports problems (unknown keys, bad values) on
	// its output but still exits 0, so any output fails the test.
	dir := t.TempDir()
	var copies []string
	for _, path := range paths {
		b, _ := os.ReadFile(path)
		name := filepath.Base(path)
		stub := filepath.Join(dir, strings.TrimSuffix(name, ".service"))
		if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("ExecStart=/usr/local/bin/"+filepath.Base(stub)), []byte("ExecStart="+stub))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, filepath.Join(dir, name))
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, copies...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(gomod))
	if goVersion == nil {
		t.Fatal("go.mod has no go directive")
	}
	if !strings.Contains(df, "ARG GO_VERSION="+goVersion[1]+"\n") || !strings.Contains(df, "FROM golang:${GO_VERSION}") {
		t.Errorf("the builder is not golang:%s (go.mod's go %s)", goVersion[1], goVersion[1])
	}
	if !strings.Contains(df, "CGO_ENABLED=0") {
		t.Error("binaries are not built with CGO_ENABLED=0")
	}
	// The four programs are built (cmd/ may hold tools, such as a
	// benchmark, that the image leaves out).
	loop := regexp.MustCompile(`for cmd in ([a-z ]+); do`).FindStringSubmatch(df)
	if loop == nil {
		t.Fatal("no `for cmd in ...; do` build loop")
	}
	for _, c := range []string{"register", "gateway", "worker", "allinone"} {
		if _, err := os.Stat(filepath.Join("..", "cmd", c, "main.go")); err != nil {
			t.Errorf("cmd/%s: %v", c, err)
		}
		if !slices.Contains(strings.Fields(loop[1]), c) {
			t.Errorf("cmd/%s is not built", c)
		}
	}
	// The last stage is distroless and non-root.
	stages := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if last := stages[len(stages)-1][1]; !strings.HasPrefix(last, "gcr.io/distroless/static") || !strings.HasSuffix(last, ":nonroot") {
		t.Errorf("runtime image %s, want gcr.io/distroless/static...:nonroot", last)
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1][1], "0") || strings.HasPrefix(users[len(users)-1][1], "root") {
		t.Errorf("the image does not end with a non-root USER: %v", users)
	}
}
