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
}

// renewScript sets the lease and returns 1 when no unexpired lease existed.
var renewScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not old then return 1 end
local ok, lease = pcall(cjson.decode, old)
if not ok or tonumber(lease.expires_ms) < tonumber(ARGV[3]) then return 1 end
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

// expireScript deletes the lease only if it lapsed before ARGV[2].
var expireScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local ok, lease = pcall(cjson.decode, old)
if ok and tonumber(lease.expires_ms) >= tonumber(ARGV[2]) then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
`)

// Expire implements Table.
func (t *RedisTable) Expire(ctx context.Context, id string, now time.Time) (bool, error) {
	n, err := expireScript.Run(ctx, t.rdb, []string{t.key}, id, now.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("register: expire lease %s: %w", id, err)
	}
	return n == 1, nil
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
		})
	}
	sortLeases(out)
	return out, nil
}
