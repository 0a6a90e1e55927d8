package directory

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/gatewire/gatewire/internal/metrics"
)

// cacheMaxUIDs bounds the uids a Cache remembers; when it is full, expired
// answers are dropped, and if that is not enough, all of them.
const cacheMaxUIDs = 100_000

// Cache is a Directory that remembers, per uid, the answers of ClientIDs
// of the Directory it wraps, and forgets a uid as soon as it hears that
// the uid's connections changed. It answers from memory only while a
// change feed is following it (Redis.Watch): before the feed has started,
// and from the moment it may have missed a change until it follows again,
// every call reads through, and what it remembered is dropped. An answer
// is also dropped ttl after its read began, whatever the feed says.
//
// An answer whose read was under way when its uid changed is not kept: a
// read starts by marking its uids as being read, a change removes the
// mark, and the answer is kept only where the mark is still its own.
//
// Writes through the Cache (Bind, Unbind, PurgeGateway) forget what they
// change at once; every other method passes through unchanged. ClientIDs
// returns slices that are the caller's own.
type Cache struct {
	Directory
	ttl time.Duration

	mu        sync.Mutex
	following bool
	reads     uint64 // reads begun; each read's number is its mark
	answers   map[string]*answer
}

// answer is what a Cache remembers of one uid.
type answer struct {
	ids     []string // the uid's client_ids; nil when it has none
	expires time.Time
	read    uint64 // while the answer is being read: the read's mark; 0 once kept
}

// NewCache returns a Cache over d that keeps answers for ttl (it must be
// positive). It reads through until a change feed follows it.
func NewCache(d Directory, ttl time.Duration) *Cache {
	return &Cache{Directory: d, ttl: ttl, answers: make(map[string]*answer)}
}

// ClientIDs implements Directory.
func (c *Cache) ClientIDs(ctx context.Context, uids ...string) (map[string][]string, error) {
	if err := checkUIDs(uids); err != nil {
		return nil, err
	}
	start := time.Now()
	out := make(map[string][]string, len(uids))
	var misses []string
	c.mu.Lock()
	if !c.following {
		c.mu.Unlock()
		metrics.DirectoryCacheOff.Add(float64(len(uids)))
		return c.Directory.ClientIDs(ctx, uids...)
	}
	c.reads++
	mark := c.reads
	for _, uid := range uids {
		a := c.answers[uid]
		switch {
		case a != nil && a.read == 0 && start.Before(a.expires):
			if len(a.ids) > 0 {
				out[uid] = slices.Clone(a.ids)
			}
		case a != nil && a.read == mark:
			// Asked twice in this call.
		default:
			c.makeRoomLocked(start)
			c.answers[uid] = &answer{read: mark}
			misses = append(misses, uid)
		}
	}
	c.mu.Unlock()
	metrics.DirectoryCacheHits.Add(float64(len(uids) - len(misses)))
	if len(misses) == 0 {
		return out, nil
	}
	metrics.DirectoryCacheMisses.Add(float64(len(misses)))

	res, err := c.Directory.ClientIDs(ctx, misses...)
	c.mu.Lock()
	for _, uid := range misses {
		a := c.answers[uid]
		if a == nil || a.read != mark {
			continue // changed, or dropped, while it was being read
		}
		if err != nil {
			delete(c.answers, uid)
			continue
		}
		a.ids, a.expires, a.read = res[uid], start.Add(c.ttl), 0
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, uid := range misses {
		if ids := res[uid]; len(ids) > 0 {
			out[uid] = slices.Clone(ids)
		}
	}
	return out, nil
}

// makeRoomLocked makes room for one more answer: when the Cache is full it
// drops the expired answers, and all of them if that frees nothing.
func (c *Cache) makeRoomLocked(now time.Time) {
	if len(c.answers) < cacheMaxUIDs {
		return
	}
	for uid, a := range c.answers {
		if a.read == 0 && !now.Before(a.expires) {
			delete(c.answers, uid)
		}
	}
	if len(c.answers) >= cacheMaxUIDs {
		clear(c.answers)
	}
}

// Forget drops what the Cache knows of uid, including a read under way.
// The change feed calls it after each change of uid's connections.
func (c *Cache) Forget(uid string) {
	c.mu.Lock()
	delete(c.answers, uid)
	c.mu.Unlock()
}

// Follow tells the Cache whether a change feed follows it. Each call drops
// everything it knows: on true, changes may have been missed before the
// feed started; on false, from now on they may be.
func (c *Cache) Follow(following bool) {
	c.mu.Lock()
	c.following = following
	clear(c.answers)
	c.mu.Unlock()
	metrics.DirectoryCacheFollowing.Set(boolGauge(following))
}

// Bind implements Directory: it forgets uid once the entry is written.
func (c *Cache) Bind(ctx context.Context, clientID, uid string) error {
	defer c.Forget(uid)
	return c.Directory.Bind(ctx, clientID, uid)
}

// Unbind implements Directory: it forgets uid once the entry is removed.
func (c *Cache) Unbind(ctx context.Context, clientID, uid string) error {
	defer c.Forget(uid)
	return c.Directory.Unbind(ctx, clientID, uid)
}

// PurgeGateway implements Directory: it forgets the purged entries' uids.
func (c *Cache) PurgeGateway(ctx context.Context, gatewayID string) (map[string]string, error) {
	entries, err := c.Directory.PurgeGateway(ctx, gatewayID)
	c.mu.Lock()
	if err != nil {
		clear(c.answers) // some were purged, which is not known
	}
	for _, uid := range entries {
		delete(c.answers, uid)
	}
	c.mu.Unlock()
	return entries, err
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
