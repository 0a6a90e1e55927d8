// Package register knows which gateways are alive.
//
// Server is the register's gRPC service: gateways hold leases on Announce
// streams, workers watch the live list on Watch streams. Leases live in a
// Table — MemoryTable for a single register (the all-in-one), RedisTable
// when several register replicas share one Redis, so that any replica can
// serve any gateway or worker and none is a single point of failure. A lease
// that lapses drops the gateway and purges its directory entries. Client is
// the other side: Announce for gateways, Watch for workers, each failing over
// between replicas. Start with NewServer and Server.Run, or NewClient.
package register
