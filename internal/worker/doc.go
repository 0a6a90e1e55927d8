// Package worker runs business logic for clients of every live gateway.
//
// A Worker watches the register for live gateways, keeps one link (a gRPC
// stream) to each, receives client events on those links and hands them to a
// Handler, and implements the API that handlers and the Push API use to reach
// clients: sends and binds go as commands to the gateways that hold the
// connections, uid lookups go to the directory. Events of one client are
// handled in order, one at a time; events of different clients concurrently.
// Start with New and Run.
package worker
