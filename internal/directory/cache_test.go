package directory

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatewire/gatewire/internal/testsvc"
)

// TestCacheMemory runs the contract over a following Cache: its own writes
// must never leave it answering from a stale memory.
func TestCacheMemory(t *testing.T) {
	testContract(t, func(t *testing.T) Directory {
		c := NewCache(NewMemory(), time.Hour)
		c.Follow(true)
		return c
	})
}

// TestCacheRedis runs the contract over a Cache that a Redis change feed
// follows.
func TestCacheRedis(t *testing.T) {
	t.Parallel() // mostly waits for the change feed, as TestCacheRedisCluster does
	testFollowingCache(t, newRedisClient(t, testsvc.Redis(t)))
}

// TestCacheRedisCluster runs the contract over a Cache that the change
// feed of a Redis Cluster follows: a change published through one node
// reaches the subscription, whichever node that is on.
func TestCacheRedisCluster(t *testing.T) {
	t.Parallel()
	testFollowingCache(t, testsvc.RedisClusterClient(t))
}

// testFollowingCache runs the contract over Caches of Redis directories on
// client, each following its directory's change feed.
func testFollowingCache(t *testing.T, client redis.UniversalClient) {
	testContract(t, func(t *testing.T) Directory {
		r := NewRedis(client, testPrefix(t))
		c := NewCache(Coalesce(r), time.Hour)
		watch(t, r, c)
		return c
	})
}

// TestCacheReadsThroughUnlessFollowed checks that a Cache without a change
// feed, or whose feed stopped, remembers nothing.
func TestCacheReadsThroughUnlessFollowed(t *testing.T) {
	m := NewMemory()
	c := NewCache(m, time.Hour)
	a1, a2 := cid(gwA, 1), cid(gwA, 2)
	wantIDs(t, c, "alice")
	mustBind(t, m, a1, "alice") // behind the Cache's back
	wantIDs(t, c, "alice", a1)

	c.Follow(true)
	wantIDs(t, c, "alice", a1)
	c.Follow(false)
	mustBind(t, m, a2, "alice")
	wantIDs(t, c, "alice", a1, a2)
}

// TestCacheRemembersUntilForgotten checks hits, Forget, and that starting
// to follow again drops what was remembered.
func TestCacheRemembersUntilForgotten(t *testing.T) {
	m := NewMemory()
	c := NewCache(m, time.Hour)
	c.Follow(true)
	a1, b1 := cid(gwA, 1), cid(gwB, 1)
	wantIDs(t, c, "alice")
	mustBind(t, m, a1, "alice")
	mustBind(t, m, b1, "bob")
	wantIDs(t, c, "alice") // remembered: no connections
	c.Forget("alice")
	wantIDs(t, c, "alice", a1)
	wantIDs(t, c, "bob", b1)

	mustUnbind(t, m, a1, "alice")
	mustUnbind(t, m, b1, "bob")
	wantIDs(t, c, "alice", a1)
	c.Follow(true) // a feed that restarts may have missed changes
	wantIDs(t, c, "alice")
	wantIDs(t, c, "bob")
}

// TestCacheExpires checks that an answer is dropped ttl after its read.
func TestCacheExpires(t *testing.T) {
	m := NewMemory()
	c := NewCache(m, time.Nanosecond)
	c.Follow(true)
	wantIDs(t, c, "alice")
	a1 := cid(gwA, 1)
	mustBind(t, m, a1, "alice")
	wantIDs(t, c, "alice", a1)
}

// TestCacheOwnWritesForget checks that Bind, Unbind and PurgeGateway
// through the Cache forget the uids they change.
func TestCacheOwnWritesForget(t *testing.T) {
	c := NewCache(NewMemory(), time.Hour)
	c.Follow(true)
	a1, b1 := cid(gwA, 1), cid(gwB, 1)
	wantIDs(t, c, "alice")
	mustBind(t, c, a1, "alice")
	wantIDs(t, c, "alice", a1)
	mustUnbind(t, c, a1, "alice")
	wantIDs(t, c, "alice")
	mustBind(t, c, b1, "bob")
	wantIDs(t, c, "bob", b1)
	if _, err := c.PurgeGateway(t.Context(), gwB); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, c, "bob")
}

// TestCacheDropsAnswerChangedWhileRead checks that an answer read before a
// change, but returned after it, is not kept.
func TestCacheDropsAnswerChangedWhileRead(t *testing.T) {
	m, s, c, done := heldRead(t)
	a1 := cid(gwA, 1)
	mustBind(t, m, a1, "alice")
	c.Forget("alice") // what the change feed does
	close(s.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.release = nil
	wantIDs(t, c, "alice", a1)
}

// TestCacheConcurrentReads checks that a lookup made while another read of
// the same uid is under way reads for itself, and that only the read that
// began last is kept.
func TestCacheConcurrentReads(t *testing.T) {
	m, s, c, done := heldRead(t)
	a1 := cid(gwA, 1)
	mustBind(t, m, a1, "alice")
	second := make(chan map[string][]string, 1)
	go func() {
		got, err := c.ClientIDs(t.Context(), "alice")
		if err != nil {
			got = map[string][]string{"error": {err.Error()}}
		}
		second <- got
	}()
	select {
	case <-s.read:
	case got := <-second:
		t.Fatalf("second lookup answered %v without reading", got)
	}
	close(s.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := <-second; !slices.Equal(got["alice"], []string{a1}) {
		t.Fatalf("second lookup = %v, want alice: [%s]", got, a1)
	}
	s.release = nil
	wantIDs(t, c, "alice", a1) // the first read's stale answer was not kept
}

// TestCacheKeepsNoError checks that a failed read is not remembered.
func TestCacheKeepsNoError(t *testing.T) {
	m := NewMemory()
	f := &failingDir{Directory: m, fail: true}
	c := NewCache(f, time.Hour)
	c.Follow(true)
	if _, err := c.ClientIDs(t.Context(), "alice"); !errors.Is(err, errDown) {
		t.Fatalf("ClientIDs = %v, want %v", err, errDown)
	}
	f.fail = false
	a1 := cid(gwA, 1)
	mustBind(t, m, a1, "alice")
	wantIDs(t, c, "alice", a1)
}

// TestCacheAnswersAreCallersOwn checks that changing a returned slice does
// not change what the Cache answers next, and that a uid asked twice in
// one call is read once.
func TestCacheAnswersAreCallersOwn(t *testing.T) {
	m := NewMemory()
	a1 := cid(gwA, 1)
	mustBind(t, m, a1, "alice")
	c := NewCache(m, time.Hour)
	c.Follow(true)
	for range 2 {
		got, err := c.ClientIDs(t.Context(), "alice", "alice")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got["alice"], []string{a1}) {
			t.Fatalf("ClientIDs = %v, want alice: [%s]", got, a1)
		}
		got["alice"][0] = "scribbled"
	}
}

// TestRedisWatch checks that a Cache following Redis hears the changes
// made by another process's writes (the gateways'), the register's purge
// included, and misses none made while its subscription was down.
func TestRedisWatch(t *testing.T) {
	ctx := t.Context()
	addr := testsvc.Redis(t)
	prefix := testPrefix(t)
	writer := NewRedis(newRedisClient(t, addr), prefix)
	reader := NewRedis(newRedisClient(t, addr, "watch-reader"), prefix)
	c := NewCache(reader, time.Hour)
	logs := watch(t, reader, c)
	a1, b1 := cid(gwA, 1), cid(gwB, 1)

	wantIDs(t, c, "alice")
	mustBind(t, writer, a1, "alice")
	eventuallyIDs(t, c, "alice", a1)
	mustBind(t, writer, b1, "alice")
	eventuallyIDs(t, c, "alice", a1, b1)
	mustUnbind(t, writer, a1, "alice")
	eventuallyIDs(t, c, "alice", b1)
	if _, err := writer.PurgeGateway(ctx, gwB); err != nil {
		t.Fatal(err)
	}
	eventuallyIDs(t, c, "alice")

	// Cut the subscription and change alice at once: the change is
	// published to nobody, and the Cache must not answer from before it.
	killPubSub(t, writer.client, "watch-reader")
	mustBind(t, writer, a1, "alice")
	eventuallyIDs(t, c, "alice", a1)
	waitFollowing(t, c, true)
	mustUnbind(t, writer, a1, "alice")
	eventuallyIDs(t, c, "alice")

	// The operator hears of the loss once, and of the return.
	logs.eventually(t, "level=WARN msg=\"directory change feed down; every lookup reads Redis until it is back\"")
	logs.eventually(t, "level=INFO msg=\"directory change feed restored; lookups are answered from memory again\"")
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("the loss was logged %d times, want once:\n%s", n, logs)
	}
}

// TestRedisWatchDown: a feed whose Redis refuses every connection is
// logged down once, its retries at debug level, and the Cache reads
// through.
func TestRedisWatchDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nobody listens there now
	r := NewRedis(newRedisClient(t, addr), testPrefix(t))
	c := NewCache(r, time.Hour)
	logs, log := newLogLines()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Watch(ctx, c, log) })
	logs.eventually(t, `level=DEBUG msg="directory change feed still down"`)
	if c.isFollowing() {
		t.Error("the Cache follows a feed that never subscribed")
	}
	cancel()
	wg.Wait()
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want one:\n%s", n, logs)
	}
}

// logLines collects a logger's text output.
type logLines struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newLogLines returns a logger at debug level and what it writes.
func newLogLines() (*logLines, *slog.Logger) {
	l := &logLines{}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// eventually waits until the output holds want.
func (l *logLines) eventually(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %s in:\n%s", want, l)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killPubSub kills, through client, the pub/sub connections named name.
func killPubSub(t *testing.T, client redis.UniversalClient, name string) {
	t.Helper()
	list, err := client.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for line := range strings.Lines(list) {
		fields := strings.Fields(line)
		if !slices.Contains(fields, "name="+name) || !slices.Contains(fields, "flags=P") {
			continue
		}
		id := strings.TrimPrefix(fields[0], "id=")
		if err := client.Do(t.Context(), "client", "kill", "id", id).Err(); err != nil {
			t.Fatal(err)
		}
		killed++
	}
	if killed == 0 {
		t.Fatalf("no pub/sub connection named %s in\n%s", name, list)
	}
}

// watch runs r.Watch for c until the test ends, waits until c follows,
// and returns what Watch logs.
func watch(t *testing.T, r *Redis, c *Cache) *logLines {
	t.Helper()
	logs, log := newLogLines()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Watch(ctx, c, log) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if c.isFollowing() {
			t.Error("Watch returned with the Cache still following")
		}
	})
	waitFollowing(t, c, true)
	return logs
}

func (c *Cache) isFollowing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.following
}

func waitFollowing(t *testing.T, c *Cache, want bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); c.isFollowing() != want; {
		if time.Now().After(deadline) {
			t.Fatalf("following = %v after 10s, want %v", !want, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// wantIDs checks that d answers uid's client_ids with exactly want.
func wantIDs(t *testing.T, d Directory, uid string, want ...string) {
	t.Helper()
	if got := idsOf(t, d, uid); !slices.Equal(got, want) {
		t.Fatalf("client_ids of %s = %v, want %v", uid, got, want)
	}
}

// eventuallyIDs waits up to 10s for d to answer uid's client_ids with
// exactly want.
func eventuallyIDs(t *testing.T, d Directory, uid string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := idsOf(t, d, uid)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client_ids of %s = %v after 10s, want %v", uid, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func idsOf(t *testing.T, d Directory, uid string) []string {
	t.Helper()
	got, err := d.ClientIDs(t.Context(), uid)
	if err != nil {
		t.Fatal(err)
	}
	ids := got[uid]
	slices.Sort(ids)
	return ids
}

// heldRead starts a lookup of alice (no connections) through a following
// Cache over a slowDir, and returns once its answer is read and held: the
// directory behind the slowDir, the slowDir, the Cache, and where the
// lookup's error arrives once s.release is closed.
func heldRead(t *testing.T) (*Memory, *slowDir, *Cache, <-chan error) {
	m := NewMemory()
	s := &slowDir{Directory: m, read: make(chan struct{}), release: make(chan struct{})}
	c := NewCache(s, time.Hour)
	c.Follow(true)
	done := make(chan error, 1)
	go func() {
		_, err := c.ClientIDs(t.Context(), "alice")
		done <- err
	}()
	<-s.read
	return m, s, c, done
}

// slowDir reads ClientIDs at once and, while release is set, returns the
// answer only once release is closed: an answer that is stale when it
// arrives.
type slowDir struct {
	Directory
	read    chan struct{} // receives once per call, once the answer is read
	release chan struct{}
}

func (s *slowDir) ClientIDs(ctx context.Context, uids ...string) (map[string][]string, error) {
	res, err := s.Directory.ClientIDs(ctx, uids...)
	if s.release != nil {
		s.read <- struct{}{}
		<-s.release
	}
	return res, err
}

var errDown = errors.New("directory down")

// failingDir fails ClientIDs while fail is set (tests set it between
// calls only).
type failingDir struct {
	Directory
	fail bool
}

func (f *failingDir) ClientIDs(ctx context.Context, uids ...string) (map[string][]string, error) {
	if f.fail {
		return nil, errDown
	}
	return f.Directory.ClientIDs(ctx, uids...)
}
