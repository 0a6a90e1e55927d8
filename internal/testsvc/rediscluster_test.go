package testsvc

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisCluster checks that RedisCluster's nodes serve every slot to a
// cluster client, that a message published on one node reaches a
// subscriber of another, and that the nodes are gone after cleanup.
func TestRedisCluster(t *testing.T) {
	var addrs []string
	t.Run("running", func(t *testing.T) {
		addrs = RedisCluster(t)
		if len(addrs) != clusterNodes {
			t.Fatalf("RedisCluster() = %v, want %d addresses", addrs, clusterNodes)
		}
		ctx := t.Context()
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		defer c.Close()
		nodes := make([]*redis.Client, len(addrs))
		for i, addr := range addrs {
			nodes[i] = redis.NewClient(&redis.Options{Addr: addr})
			defer nodes[i].Close()
		}
		owners := map[string]bool{} // the nodes that stored a key
		for i := 0; len(owners) < clusterNodes; i++ {
			if i == 1000 {
				t.Fatalf("1,000 keys landed on only %d of %d nodes", len(owners), clusterNodes)
			}
			key := fmt.Sprintf("k%d", i)
			if err := c.Set(ctx, key, i, 0).Err(); err != nil {
				t.Fatalf("SET %s: %v", key, err)
			}
			if got, err := c.Get(ctx, key).Int(); err != nil || got != i {
				t.Fatalf("GET %s = %d, %v; want %d", key, got, err, i)
			}
			for i, node := range nodes {
				if n, err := node.Exists(ctx, key).Result(); err == nil && n == 1 {
					owners[addrs[i]] = true
				}
			}
		}

		sub := nodes[2].Subscribe(ctx, "news")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
			t.Fatalf("SUBSCRIBE on %s: %v", addrs[2], err)
		}
		if err := nodes[0].Publish(ctx, "news", "hello").Err(); err != nil {
			t.Fatalf("PUBLISH on %s: %v", addrs[0], err)
		}
		select {
		case m := <-sub.Channel():
			if m.Payload != "hello" {
				t.Fatalf("subscriber on %s got %q, want hello", addrs[2], m.Payload)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("a PUBLISH on %s did not reach a subscriber on %s", addrs[0], addrs[2])
		}
	})
	for _, addr := range addrs {
		if err := pingRedis(addr); err == nil {
			t.Errorf("cluster node %s still answers after cleanup", addr)
		}
	}
}
