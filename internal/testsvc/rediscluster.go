package testsvc

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterNodes is how many masters RedisCluster starts: the fewest Redis
// Cluster accepts.
const clusterNodes = 3

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// clusterJoinTimeout bounds how long RedisCluster waits for its nodes to
// agree that the cluster is up.
const clusterJoinTimeout = 20 * time.Second

// RedisCluster starts a Redis Cluster of three masters without replicas,
// each a private redis-server as Redis starts one, shares the hash slots
// among them, waits until every node knows the others and reports the
// cluster up, and returns their addresses. The servers stop when tb's
// cleanup runs. Without redis-server it skips or fails tb as Redis does.
func RedisCluster(tb testing.TB) []string {
	tb.Helper()
	addrs := make([]string, 0, clusterNodes)
	for range clusterNodes {
		s := startRedisServer(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000")
		if s == nil {
			return nil
		}
		addrs = append(addrs, s.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterJoinTimeout)
	defer cancel()
	if err := formCluster(ctx, addrs); err != nil {
		tb.Fatalf("testsvc: form a Redis Cluster of %v: %v", addrs, err)
		return nil
	}
	return addrs
}

// RedisClusterClient starts a cluster as RedisCluster does and returns a
// client of it, closed when tb's cleanup runs (before the servers stop).
// It returns nil when tb was skipped or failed.
func RedisClusterClient(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	addrs := RedisCluster(tb)
	if addrs == nil {
		return nil
	}
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	tb.Cleanup(func() {
		if err := client.Close(); err != nil {
			tb.Errorf("testsvc: close the Redis Cluster client: %v", err)
		}
	})
	return client
}

// formCluster gives each node at addrs an equal range of the slots, has the
// first meet the others, and waits until every node reports the cluster up
// with all of them in it.
func formCluster(ctx context.Context, addrs []string) error {
	clients := make([]*redis.Client, len(addrs))
	for i, addr := range addrs {
		clients[i] = redis.NewClient(&redis.Options{Addr: addr})
		defer clients[i].Close()
	}
	per := clusterSlots / len(addrs)
	for i, c := range clients {
		first, last := i*per, (i+1)*per-1
		if i == len(clients)-1 {
			last = clusterSlots - 1
		}
		if err := c.ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			return fmt.Errorf("add slots %d-%d to %s: %w", first, last, addrs[i], err)
		}
	}
	for _, addr := range addrs[1:] {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return err
		}
		if err := clients[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			return fmt.Errorf("%s meet %s: %w", addrs[0], addr, err)
		}
	}
	want := "cluster_known_nodes:" + strconv.Itoa(len(addrs))
	for i, c := range clients {
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, want) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s did not report the cluster up (last info %q, err %v): %w", addrs[i], info, err, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
