package directory_test

import (
	"context"
	"fmt"
	"slices"

	"github.com/gatewire/gatewire/internal/clientid"
	"github.com/gatewire/gatewire/internal/directory"
)

// A worker reads through Live so that a uid whose connections are all on a
// dead gateway looks offline until the register purges that gateway.
func ExampleLive() {
	ctx := context.Background()
	const liveGW, deadGW = "00000000000000a1", "00000000000000b2"
	phone, laptop := clientid.Make(liveGW, 1), clientid.Make(deadGW, 1)

	dir := directory.NewMemory()
	_ = dir.Bind(ctx, phone, "alice") // a gateway binds its connections
	_ = dir.Bind(ctx, laptop, "alice")
	_ = dir.Bind(ctx, clientid.Make(deadGW, 2), "bob")

	reader := directory.Live(dir, func(gw string) bool { return gw == liveGW })
	online, _ := reader.ClientIDs(ctx, "alice", "bob")
	fmt.Println("alice:", slices.Equal(online["alice"], []string{phone}))
	_, bobOnline := online["bob"]
	fmt.Println("bob online:", bobOnline)

	purged, _ := dir.PurgeGateway(ctx, deadGW) // the register, once deadGW is declared dead
	fmt.Println("purged:", len(purged))
	// Output:
	// alice: true
	// bob online: false
	// purged: 2
}
