package desk

import (
	"context"
	"time"

	"github.com/gatewire/gatewire/internal/store"
)

// sweepInterval is how often Run looks at the agents' connections: a
// quarter of the grace period, between 200ms and 5s. An agent goes offline
// between Grace and Grace plus one interval after their last connection
// left.
func (d *Desk) sweepInterval() time.Duration {
	return min(max(d.grace/4, 200*time.Millisecond), 5*time.Second)
}

// Run keeps presence true until ctx ends: every sweep interval (and soon
// after an agent's connection closed) it asks the directory which agents
// that are not offline have a connection, starts the grace period of those
// who have none, clears it for those who are back, sets offline those whose
// grace ran out (their conversations go back to the queue), and drains the
// queue. Any number of workers may run it on one store: each step is an
// idempotent conditional update, and a presence change is reported by the
// one worker whose update made it.
func (d *Desk) Run(ctx context.Context) {
	t := time.NewTicker(d.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.sweepSoon:
			// Let the gateway drop the closed connection's binding first.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		d.Sweep(ctx)
	}
}

// Sweep runs one round of Run.
func (d *Desk) Sweep(ctx context.Context) {
	d.forgetTyping()
	callCtx, cancel := d.call(ctx)
	agents, err := d.store.Agents(callCtx)
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk sweep: list agents", "err", err)
		return
	}
	var watch []string
	for _, a := range agents {
		if a.Presence != store.PresenceOffline {
			watch = append(watch, a.UID)
		}
	}
	if len(watch) > 0 {
		callCtx, cancel := d.call(ctx)
		online, err := d.api.UIDsOnline(callCtx, watch)
		cancel()
		if err != nil {
			// Without a true picture nobody is marked lost.
			d.log.WarnContext(ctx, "desk sweep: agents online", "err", err)
			return
		}
		var here, gone []string
		for _, uid := range watch {
			if online[uid] {
				here = append(here, uid)
			} else {
				gone = append(gone, uid)
			}
		}
		callCtx, cancel = d.call(ctx)
		err = d.store.AgentsConnected(callCtx, here)
		cancel()
		if err != nil {
			d.log.WarnContext(ctx, "desk sweep: agents connected", "err", err)
		}
		callCtx, cancel = d.call(ctx)
		err = d.store.AgentsDisconnected(callCtx, gone, d.now())
		cancel()
		if err != nil {
			d.log.WarnContext(ctx, "desk sweep: agents disconnected", "err", err)
		}
	}
	now := d.now()
	callCtx, cancel = d.call(ctx)
	changes, err := d.store.ExpireAgents(callCtx, now.Add(-d.grace), now)
	cancel()
	if err != nil {
		d.log.WarnContext(ctx, "desk sweep: expire agents", "err", err)
	}
	for _, ch := range changes {
		d.log.InfoContext(ctx, "desk: agent offline after the grace period", "agent", ch.Agent, "grace", d.grace, "released", len(ch.Released))
		d.presenceChanged(ctx, presenceFrame{Type: typePresence, UID: ch.Agent, Status: string(store.PresenceOffline), Reason: "disconnected"}, ch.Released)
	}
	if len(changes) == 0 {
		d.drain(ctx)
	}
}
