package directory

import (
	"context"

	"github.com/gatewire/gatewire/internal/clientid"
)

// Live returns a Directory that reads through d but hides the entries of
// gateways that are not live: ClientIDs leaves out their client_ids (and a
// uid left without any), and UID returns "" for their client_ids. Writes,
// PurgeGateway and GatewayEntries pass through to d unchanged.
//
// isLive reports whether a gateway is live; it must be non-nil, safe for
// concurrent use and fast, since it runs once per client_id read.
func Live(d Directory, isLive func(gatewayID string) bool) Directory {
	return &live{Directory: d, isLive: isLive}
}

// live is the Directory Live returns.
type live struct {
	Directory
	isLive func(gatewayID string) bool
}

// ClientIDs returns the client_ids of each uid that are held by live
// gateways, leaving out uids without any.
func (l *live) ClientIDs(ctx context.Context, uids ...string) (map[string][]string, error) {
	all, err := l.Directory.ClientIDs(ctx, uids...)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(all))
	for uid, cids := range all {
		var kept []string
		for _, cid := range cids {
			if gw, err := clientid.GatewayOf(cid); err == nil && l.isLive(gw) {
				kept = append(kept, cid)
			}
		}
		if len(kept) > 0 {
			out[uid] = kept
		}
	}
	return out, nil
}

// UID returns the uid clientID is bound to, or "" when it is not bound or
// its gateway is not live.
func (l *live) UID(ctx context.Context, clientID string) (string, error) {
	gw, err := checkClientID("uid of", clientID)
	if err != nil {
		return "", err
	}
	if !l.isLive(gw) {
		return "", nil
	}
	return l.Directory.UID(ctx, clientID)
}
