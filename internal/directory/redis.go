package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatewire/gatewire/internal/clientid"
)

// Key parts; see the key layout on Redis.
const (
	uidKeyPart         = "u:"
	gatewayKeyPart     = "g:"
	groupKeyPart       = "gr:"
	membershipsKeyPart = "gm:"
	changesChannelPart = "uid-changes"
)

// Watch's timing: with nothing heard for watchPing it pings; when
// nothing, not even the answer, is heard for watchSilence, it reconnects.
// A failed subscription is retried after watchRetry.
const (
	watchPing    = time.Second
	watchSilence = 3 * time.Second
	watchRetry   = 500 * time.Millisecond
)

// membershipSep separates the group from the client_id in a field of a
// gateway's memberships hash.
const membershipSep = "\x00"

// scanPage is the COUNT hint of HSCAN and the number of hash fields (entries
// or memberships) PurgeGateway removes per round trip.
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
//	P+"u:"+uid         SET of the client_ids bound to uid
//	P+"g:"+gatewayID   HASH client_id → uid, the entries of the connections
//	                   gateway gatewayID holds
//	P+"gr:"+group      SET of the client_ids that are members of group
//	P+"gm:"+gatewayID  HASH group+"\x00"+client_id → "1", the group
//	                   memberships of the connections gateway gatewayID
//	                   holds, so that PurgeGateway can find them
//
// and one pub/sub channel:
//
//	P+"uid-changes"    each write to a uid's set publishes the uid once
//	                   the write is acknowledged (Watch)
//
// A field of a memberships hash ends with the fixed-length client_id, so it
// splits unambiguously even when the group itself contains a NUL byte. A key
// disappears with its last member or field.
//
// The two keys of an entry or a membership usually live in different Redis
// Cluster slots, so writes are pipelined, never wrapped in MULTI or in a
// multi-key script: an entry may be half written when a command fails, and
// the caller retries or the register's PurgeGateway cleans up after a dead
// gateway. Every command of a pipeline touches one key, so a cluster client
// splits it by slot. Like Bind, JoinGroup writes the gateway's hash before
// the set and LeaveGroup removes from the set before the hash, so a half-done
// write leaves at worst a hash field without its set member, which
// PurgeGateway removes harmlessly, never a set member PurgeGateway cannot
// find.
//
// Unbind removes the hash field only while it still maps the client_id to the
// uid being unbound, with a one-key Lua script (check and delete in one step,
// one round trip together with the SREM). A stale Unbind therefore never
// erases a newer binding of the same connection.
//
// PurgeGateway and GatewayEntries read a gateway's hashes with HSCAN in
// pages, so a gateway holding many connections never blocks the server.
// PurgeGateway then, page by page, removes each entry from its uid's set (each
// membership from its group's set) and HDELs exactly the fields it read
// instead of deleting the hash: an entry or membership written after the scan
// (by a gateway wrongly declared dead) stays visible to the next purge
// instead of being orphaned in a set.
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

// groupKey returns the key of the set of group's members.
func (r *Redis) groupKey(group string) string { return r.prefix + groupKeyPart + group }

// changesChannel returns the channel that carries the uids whose sets
// changed.
func (r *Redis) changesChannel() string { return r.prefix + changesChannelPart }

// membershipsKey returns the key of the hash of gateway gatewayID's group
// memberships.
func (r *Redis) membershipsKey(gatewayID string) string {
	return r.prefix + membershipsKeyPart + gatewayID
}

// membershipField returns the field that records clientID's membership of
// group in its gateway's memberships hash.
func membershipField(group, clientID string) string { return group + membershipSep + clientID }

// parseMembershipField splits a field made by membershipField. ok is false
// when field is not one.
func parseMembershipField(field string) (group, clientID string, ok bool) {
	n := len(field) - clientid.Len - len(membershipSep)
	if n < 1 || field[n:n+len(membershipSep)] != membershipSep {
		return "", "", false
	}
	clientID = field[n+len(membershipSep):]
	if _, err := clientid.GatewayOf(clientID); err != nil {
		return "", "", false
	}
	return field[:n], clientID, true
}

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
	if err == nil {
		err = r.announce(ctx, []string{uid})
	}
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
	if err == nil {
		err = r.announce(ctx, []string{uid})
	}
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
	out, err := r.members(ctx, r.uidKey, distinct(uids))
	if err != nil {
		return nil, fmt.Errorf("directory: client_ids of %d uids: %w", len(uids), err)
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

// PurgeGateway removes every entry and group membership of gateway
// gatewayID and returns the entries. It is meant for a dead gateway and is
// safe to retry after an error.
func (r *Redis) PurgeGateway(ctx context.Context, gatewayID string) (map[string]string, error) {
	if err := checkGatewayID("purge", gatewayID); err != nil {
		return nil, err
	}
	key := r.gatewayKey(gatewayID)
	entries, err := r.scanHash(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("directory: purge gateway %q: %w", gatewayID, err)
	}
	err = r.removeFields(ctx, key, entries, func(p redis.Pipeliner, cid, uid string) string {
		p.SRem(ctx, r.uidKey(uid), cid)
		return uid
	})
	if err != nil {
		return nil, fmt.Errorf("directory: purge gateway %q: %w", gatewayID, err)
	}

	key = r.membershipsKey(gatewayID)
	memberships, err := r.scanHash(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("directory: purge groups of gateway %q: %w", gatewayID, err)
	}
	err = r.removeFields(ctx, key, memberships, func(p redis.Pipeliner, field, _ string) string {
		// A field that is not a membership has nothing to undo; it is
		// deleted all the same.
		if group, cid, ok := parseMembershipField(field); ok {
			p.SRem(ctx, r.groupKey(group), cid)
		}
		return ""
	})
	if err != nil {
		return nil, fmt.Errorf("directory: purge groups of gateway %q: %w", gatewayID, err)
	}
	return entries, nil
}

// removeFields deletes the fields of the hash at key, scanPage per round
// trip: each round trip is one pipeline of undo for each field of the page,
// then one HDEL of the page. The uids undo returns (non-empty ones) are
// announced once the page is removed.
func (r *Redis) removeFields(ctx context.Context, key string, fields map[string]string, undo func(p redis.Pipeliner, field, value string) (uid string)) error {
	batch := make([]string, 0, min(len(fields), scanPage))
	var changed []string
	flush := func() error {
		changed = changed[:0]
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, f := range batch {
				if uid := undo(p, f, fields[f]); uid != "" {
					changed = append(changed, uid)
				}
			}
			p.HDel(ctx, key, batch...)
			return nil
		})
		batch = batch[:0]
		if err == nil {
			err = r.announce(ctx, changed)
		}
		return err
	}
	for f := range fields {
		batch = append(batch, f)
		if len(batch) == scanPage {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if len(batch) > 0 {
		return flush()
	}
	return nil
}

// GatewayEntries returns the entries of gateway gatewayID.
func (r *Redis) GatewayEntries(ctx context.Context, gatewayID string) (map[string]string, error) {
	if err := checkGatewayID("entries of", gatewayID); err != nil {
		return nil, err
	}
	entries, err := r.scanHash(ctx, r.gatewayKey(gatewayID))
	if err != nil {
		return nil, fmt.Errorf("directory: entries of gateway %q: %w", gatewayID, err)
	}
	return entries, nil
}

// scanHash reads the hash at key with HSCAN. A field written or removed
// during the scan may be missed.
func (r *Redis) scanHash(ctx context.Context, key string) (map[string]string, error) {
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

// JoinGroup records that clientID is a member of group: HSET on the
// gateway's memberships hash and SADD on the group's set, in one pipeline.
func (r *Redis) JoinGroup(ctx context.Context, clientID, group string) error {
	gw, err := checkMembership("join", clientID, group)
	if err != nil {
		return err
	}
	_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, r.membershipsKey(gw), membershipField(group, clientID), "1")
		p.SAdd(ctx, r.groupKey(group), clientID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory: join %q to group %q: %w", clientID, group, err)
	}
	return nil
}

// LeaveGroup removes clientID from group, if it is a member: SREM on the
// group's set and HDEL on the gateway's memberships hash, in one pipeline.
func (r *Redis) LeaveGroup(ctx context.Context, clientID, group string) error {
	gw, err := checkMembership("leave", clientID, group)
	if err != nil {
		return err
	}
	_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SRem(ctx, r.groupKey(group), clientID)
		p.HDel(ctx, r.membershipsKey(gw), membershipField(group, clientID))
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory: leave %q from group %q: %w", clientID, group, err)
	}
	return nil
}

// GroupMembers returns the client_ids of each group that has at least one
// member, with one SMEMBERS per distinct group in a single pipeline.
func (r *Redis) GroupMembers(ctx context.Context, groups ...string) (map[string][]string, error) {
	if err := checkGroups(groups); err != nil {
		return nil, err
	}
	out, err := r.members(ctx, r.groupKey, distinct(groups))
	if err != nil {
		return nil, fmt.Errorf("directory: members of %d groups: %w", len(groups), err)
	}
	return out, nil
}

// UIDs returns the uid of each bound client_id among clientIDs, with one
// HMGET per gateway in a single pipeline.
func (r *Redis) UIDs(ctx context.Context, clientIDs ...string) (map[string]string, error) {
	gws, err := checkClientIDs(clientIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	if len(clientIDs) == 0 {
		return out, nil
	}
	// The distinct client_ids of each gateway, gateways in order of first
	// appearance.
	var order []string
	byGW := make(map[string][]string)
	seen := make(map[string]struct{}, len(clientIDs))
	for i, cid := range clientIDs {
		if _, ok := seen[cid]; ok {
			continue
		}
		seen[cid] = struct{}{}
		if _, ok := byGW[gws[i]]; !ok {
			order = append(order, gws[i])
		}
		byGW[gws[i]] = append(byGW[gws[i]], cid)
	}
	cmds := make([]*redis.SliceCmd, len(order))
	_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, gw := range order {
			cmds[i] = p.HMGet(ctx, r.gatewayKey(gw), byGW[gw]...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("directory: uids of %d client_ids: %w", len(seen), err)
	}
	for i, gw := range order {
		cids := byGW[gw]
		vals := cmds[i].Val()
		if len(vals) != len(cids) {
			return nil, fmt.Errorf("directory: uids of %d client_ids: hmget %s: %d values for %d fields", len(seen), r.gatewayKey(gw), len(vals), len(cids))
		}
		for j, v := range vals {
			if uid, ok := v.(string); ok {
				out[cids[j]] = uid
			}
		}
	}
	return out, nil
}

// members returns the members of the set at key(name) for each name whose
// set is not empty, with one SMEMBERS per name in a single pipeline. names
// must be distinct.
func (r *Redis) members(ctx context.Context, key func(string) string, names []string) (map[string][]string, error) {
	out := make(map[string][]string)
	if len(names) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringSliceCmd, len(names))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			cmds[i] = p.SMembers(ctx, key(name))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, name := range names {
		if m := cmds[i].Val(); len(m) > 0 {
			out[name] = m
		}
	}
	return out, nil
}

// distinct returns the distinct strings of s in order of first appearance.
func distinct(s []string) []string {
	out := make([]string, 0, len(s))
	seen := make(map[string]struct{}, len(s))
	for _, v := range s {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}

// announce publishes each of uids, whose sets were written, on the changes
// channel, in one pipeline. It runs after the write is acknowledged: a
// pipeline of a cluster client runs its commands node by node, so a
// PUBLISH in the write's pipeline could overtake the write.
func (r *Redis) announce(ctx context.Context, uids []string) error {
	if len(uids) == 0 {
		return nil
	}
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, uid := range uids {
			p.Publish(ctx, r.changesChannel(), uid)
		}
		return nil
	})
	return err
}

// Watch makes c follow the changes of r's uids until ctx ends: it
// subscribes to the changes channel, lets c answer from memory once the
// subscription is confirmed, and tells c to forget each uid published.
// From the moment the subscription fails, or stays silent for
// watchSilence (it pings every watchPing), until it is confirmed again,
// c reads through. Watch returns when ctx ends, with c reading through.
// When the feed goes down (a subscription lost, or the first one refused)
// it logs a warning to log, and when it is back an information line;
// attempts that fail in between are logged at debug level only, so a
// Redis that stays down does not flood the log.
func (r *Redis) Watch(ctx context.Context, c *Cache, log *slog.Logger) {
	defer c.Follow(false)
	down := false
	for {
		ps := r.client.Subscribe(ctx, r.changesChannel())
		err := follow(ctx, ps, c, func() {
			if down {
				log.Info("directory change feed restored; lookups are answered from memory again")
				down = false
			}
		})
		_ = ps.Close()
		c.Follow(false)
		if ctx.Err() != nil {
			return
		}
		if !down {
			log.Warn("directory change feed down; every lookup reads Redis until it is back", "err", err, "retry_in", watchRetry)
			down = true
		} else {
			log.Debug("directory change feed still down", "err", err, "retry_in", watchRetry)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetry):
		}
	}
}

// errSilent ends a subscription that heard nothing, not even a ping's
// answer, for watchSilence.
var errSilent = errors.New("the subscription fell silent")

// follow passes what subscription ps hears on to c until it fails or falls
// silent, or ctx ends, and says why it ended. It calls confirmed each time
// the subscription is confirmed.
func follow(ctx context.Context, ps *redis.PubSub, c *Cache, confirmed func()) error {
	heard := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, watchPing)
		if err != nil {
			var ne net.Error
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case !errors.As(err, &ne) || !ne.Timeout():
				return err
			case time.Since(heard) >= watchSilence:
				return errSilent
			}
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			continue
		}
		heard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			on := m.Kind == "subscribe"
			c.Follow(on)
			if on {
				confirmed()
			}
		case *redis.Message:
			c.Forget(m.Payload)
		}
	}
}
