package register

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// RedisTable is a Table shared by several register replicas through one
// Redis hash, <prefix>gateways, field = gateway id, value = JSON lease. A
// single key keeps it valid on Redis Cluster. Expiry times are absolute, so
// replicas' clocks must agree to well within a lease (NTP).
type RedisTable struct {
	rdb redis.UniversalClient
	key string
}

// NewRedisTable returns a RedisTable using keys that start with prefix.
func NewRedisTable(rdb redis.UniversalClient, prefix string) *RedisTable {
	return &RedisTable{rdb: rdb, key: prefix + "gateways"}
}

type redisLease struct {
	LinkAddress   string `json:"link"`
	PublicAddress string `json:"public,omitempty"`
	ExpiresMillis int64  `json:"expires_ms"`
	Purging       bool   `json:"purging,omitempty"`
}

// renewScript sets the lease and returns 1 when no live lease existed, 0
// when one did, and -1 (setting nothing) while a tombstone is in force.
var renewScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
local ok, lease = false, nil
if old then ok, lease = pcall(cjson.decode, old) end
local now = tonumber(ARGV[3])
if ok and lease.purging and tonumber(lease.expires_ms) >= now then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not ok or lease.purging or tonumber(lease.expires_ms) < now then return 1 end
return 0
`)

// Renew implements Table.
func (t *RedisTable) Renew(ctx context.Context, gw *registerv1.Gateway, expires time.Time) (bool, error) {
	v, err := json.Marshal(redisLease{LinkAddress: gw.GetLinkAddress(), PublicAddress: gw.GetPublicAddress(), ExpiresMillis: expires.UnixMilli()})
	if err != nil {
		return false, fmt.Errorf("register: encode lease %s: %w", gw.GetId(), err)
	}
	fresh, err := renewScript.Run(ctx, t.rdb, []string{t.key}, gw.GetId(), v, time.Now().UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("register: renew lease %s: %w", gw.GetId(), err)
	}
	if fresh == -1 {
		return false, ErrPurging
	}
	return fresh == 1, nil
}

// Remove implements Table.
func (t *RedisTable) Remove(ctx context.Context, id string) (bool, error) {
	n, err := t.rdb.HDel(ctx, t.key, id).Result()
	if err != nil {
		return false, fmt.Errorf("register: remove lease %s: %w", id, err)
	}
	return n == 1, nil
}

// expireScript turns a lease that lapsed before ARGV[2] into a tombstone
// expiring at ARGV[3].
var expireScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local ok, lease = pcall(cjson.decode, old)
if not ok or type(lease) ~= 'table' then lease = {link = ''} end
if ok and tonumber(lease.expires_ms) and tonumber(lease.expires_ms) >= tonumber(ARGV[2]) then return 0 end
lease.purging = true
lease.expires_ms = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(lease))
return 1
`)

// Expire implements Table.
func (t *RedisTable) Expire(ctx context.Context, id string, now, purgeUntil time.Time) (bool, error) {
	n, err := expireScript.Run(ctx, t.rdb, []string{t.key}, id, now.UnixMilli(), purgeUntil.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("register: expire lease %s: %w", id, err)
	}
	return n == 1, nil
}

// forgetScript deletes the entry only if it is a tombstone.
var forgetScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local ok, lease = pcall(cjson.decode, old)
if ok and type(lease) == 'table' and not lease.purging then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
`)

// Forget implements Table.
func (t *RedisTable) Forget(ctx context.Context, id string) error {
	if err := forgetScript.Run(ctx, t.rdb, []string{t.key}, id).Err(); err != nil {
		return fmt.Errorf("register: forget tombstone %s: %w", id, err)
	}
	return nil
}

// List implements Table. Undecodable entries are skipped.
func (t *RedisTable) List(ctx context.Context) ([]Lease, error) {
	all, err := t.rdb.HGetAll(ctx, t.key).Result()
	if err != nil {
		return nil, fmt.Errorf("register: list leases: %w", err)
	}
	out := make([]Lease, 0, len(all))
	for id, v := range all {
		var l redisLease
		if json.Unmarshal([]byte(v), &l) != nil {
			continue
		}
		out = append(out, Lease{
			Gateway: &registerv1.Gateway{Id: id, LinkAddress: l.LinkAddress, PublicAddress: l.PublicAddress},
			Expires: time.UnixMilli(l.ExpiresMillis),
			Purging: l.Purging,
		})
	}
	sortLeases(out)
	return out, nil
}
