package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Key parts; see the key layout on Redis.
const (
	uidKeyPart     = "u:"
	gatewayKeyPart = "g:"
)

// scanPage is the COUNT hint of HSCAN and the number of entries PurgeGateway
// removes per round trip.
const scanPage = 1000

// unbindScript deletes field ARGV[1] of hash KEYS[1] if it holds ARGV[2].
var unbindScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
	return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`)

// Redis is a Directory stored in Redis or Redis Cluster. It is safe for
// concurrent use. Every command carries the caller's context: set a deadline
// on it.
//
// Its keys, with prefix P (for example "gatewire:"), are:
//
//	P+"u:"+uid        SET of the client_ids bound to uid
//	P+"g:"+gatewayID  HASH client_id → uid, the entries of the connections
//	                  gateway gatewayID holds
//
// The two keys of an entry usually live in different Redis Cluster slots, so
// writes are pipelined, never wrapped in MULTI or in a multi-key script: an
// entry may be half written when a command fails, and the caller retries or
// the register's PurgeGateway cleans up after a dead gateway. Every command
// of a pipeline touches one key, so a cluster client splits it by slot.
//
// Unbind removes the hash field only while it still maps the client_id to the
// uid being unbound, with a one-key Lua script (check and delete in one step,
// one round trip together with the SREM). A stale Unbind therefore never
// erases a newer binding of the same connection.
//
// PurgeGateway and GatewayEntries read the hash with HSCAN in pages, so a
// gateway holding many connections never blocks the server. PurgeGateway
// then, page by page, removes each entry from its uid's set and HDELs exactly
// the fields it read instead of deleting the hash: an entry written after the
// scan (by a gateway wrongly declared dead) stays visible to the next purge
// instead of being orphaned in a uid's set.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

var _ Directory = (*Redis)(nil)

// NewRedis returns a Directory that keeps its entries in client under keys
// beginning with prefix (for example "gatewire:"; see Redis for the key
// layout). The caller keeps ownership of client and closes it.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

// uidKey returns the key of the set of uid's client_ids.
func (r *Redis) uidKey(uid string) string { return r.prefix + uidKeyPart + uid }

// gatewayKey returns the key of the hash of gateway gatewayID's entries.
func (r *Redis) gatewayKey(gatewayID string) string { return r.prefix + gatewayKeyPart + gatewayID }

// Bind records that clientID is bound to uid: HSET on the gateway's hash and
// SADD on the uid's set, in one pipeline.
func (r *Redis) Bind(ctx context.Context, clientID, uid string) error {
	gw, err := checkEntry("bind", clientID, uid)
	if err != nil {
		return err
	}
	_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, r.gatewayKey(gw), clientID, uid)
		p.SAdd(ctx, r.uidKey(uid), clientID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory: bind %q to %q: %w", clientID, uid, err)
	}
	return nil
}

// Unbind removes the entry that binds clientID to uid, if there is one: SREM
// on the uid's set and a conditional HDEL on the gateway's hash, in one
// pipeline.
func (r *Redis) Unbind(ctx context.Context, clientID, uid string) error {
	gw, err := checkEntry("unbind", clientID, uid)
	if err != nil {
		return err
	}
	_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SRem(ctx, r.uidKey(uid), clientID)
		unbindScript.Eval(ctx, p, []string{r.gatewayKey(gw)}, clientID, uid)
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory: unbind %q from %q: %w", clientID, uid, err)
	}
	return nil
}

// ClientIDs returns the client_ids of each uid that has at least one, with
// one SMEMBERS per distinct uid in a single pipeline.
func (r *Redis) ClientIDs(ctx context.Context, uids ...string) (map[string][]string, error) {
	if err := checkUIDs(uids); err != nil {
		return nil, err
	}
	out := make(map[string][]string)
	if len(uids) == 0 {
		return out, nil
	}
	distinct := make([]string, 0, len(uids))
	seen := make(map[string]struct{}, len(uids))
	for _, uid := range uids {
		if _, ok := seen[uid]; !ok {
			seen[uid] = struct{}{}
			distinct = append(distinct, uid)
		}
	}
	cmds := make([]*redis.StringSliceCmd, len(distinct))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, uid := range distinct {
			cmds[i] = p.SMembers(ctx, r.uidKey(uid))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("directory: client_ids of %d uids: %w", len(distinct), err)
	}
	for i, uid := range distinct {
		if cids := cmds[i].Val(); len(cids) > 0 {
			out[uid] = cids
		}
	}
	return out, nil
}

// UID returns the uid clientID is bound to, or "" when it is not bound, with
// one HGET on the gateway's hash.
func (r *Redis) UID(ctx context.Context, clientID string) (string, error) {
	gw, err := checkClientID("uid of", clientID)
	if err != nil {
		return "", err
	}
	uid, err := r.client.HGet(ctx, r.gatewayKey(gw), clientID).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("directory: uid of %q: %w", clientID, err)
	}
	return uid, nil
}

// PurgeGateway removes every entry of gateway gatewayID and returns them. It
// is meant for a dead gateway and is safe to retry after an error.
func (r *Redis) PurgeGateway(ctx context.Context, gatewayID string) (map[string]string, error) {
	if err := checkGatewayID("purge", gatewayID); err != nil {
		return nil, err
	}
	key := r.gatewayKey(gatewayID)
	entries, err := r.scanGateway(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("directory: purge gateway %q: %w", gatewayID, err)
	}
	batch := make([]string, 0, min(len(entries), scanPage))
	flush := func() error {
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, cid := range batch {
				p.SRem(ctx, r.uidKey(entries[cid]), cid)
			}
			p.HDel(ctx, key, batch...)
			return nil
		})
		batch = batch[:0]
		return err
	}
	for cid := range entries {
		batch = append(batch, cid)
		if len(batch) == scanPage {
			if err := flush(); err != nil {
				return nil, fmt.Errorf("directory: purge gateway %q: %w", gatewayID, err)
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return nil, fmt.Errorf("directory: purge gateway %q: %w", gatewayID, err)
		}
	}
	return entries, nil
}

// GatewayEntries returns the entries of gateway gatewayID.
func (r *Redis) GatewayEntries(ctx context.Context, gatewayID string) (map[string]string, error) {
	if err := checkGatewayID("entries of", gatewayID); err != nil {
		return nil, err
	}
	entries, err := r.scanGateway(ctx, r.gatewayKey(gatewayID))
	if err != nil {
		return nil, fmt.Errorf("directory: entries of gateway %q: %w", gatewayID, err)
	}
	return entries, nil
}

// scanGateway reads the hash at key with HSCAN. An entry written or removed
// during the scan may be missed.
func (r *Redis) scanGateway(ctx context.Context, key string) (map[string]string, error) {
	entries := make(map[string]string)
	var cursor uint64
	for {
		kv, next, err := r.client.HScan(ctx, key, cursor, "", scanPage).Result()
		if err != nil {
			return nil, fmt.Errorf("hscan %s: %w", key, err)
		}
		if len(kv)%2 != 0 {
			return nil, fmt.Errorf("hscan %s: odd reply length %d", key, len(kv))
		}
		for i := 0; i < len(kv); i += 2 {
			entries[kv[i]] = kv[i+1]
		}
		if next == 0 {
			return entries, nil
		}
		cursor = next
	}
}
