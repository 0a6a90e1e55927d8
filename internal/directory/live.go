package directory

import (
	"context"

	"github.com/gatewire/gatewire/internal/clientid"
)

// Live returns a Directory that reads through d but hides the entries and
// group memberships of gateways that are not live: ClientIDs and GroupMembers
// leave out their client_ids (and a uid or group left without any), UID
// returns "" for their client_ids and UIDs leaves them out. Writes,
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
	return l.keepLive(all), nil
}

// GroupMembers returns the members of each group that are held by live
// gateways, leaving out groups without any.
func (l *live) GroupMembers(ctx context.Context, groups ...string) (map[string][]string, error) {
	all, err := l.Directory.GroupMembers(ctx, groups...)
	if err != nil {
		return nil, err
	}
	return l.keepLive(all), nil
}

// keepLive returns sets without the client_ids of gateways that are not live
// and without the keys left with none.
func (l *live) keepLive(sets map[string][]string) map[string][]string {
	out := make(map[string][]string, len(sets))
	for name, cids := range sets {
		var kept []string
		for _, cid := range cids {
			if l.held(cid) {
				kept = append(kept, cid)
			}
		}
		if len(kept) > 0 {
			out[name] = kept
		}
	}
	return out
}

// held reports whether clientID is held by a live gateway.
func (l *live) held(clientID string) bool {
	gw, err := clientid.GatewayOf(clientID)
	return err == nil && l.isLive(gw)
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

// UIDs returns the uid of each bound client_id among clientIDs whose gateway
// is live.
func (l *live) UIDs(ctx context.Context, clientIDs ...string) (map[string]string, error) {
	all, err := l.Directory.UIDs(ctx, clientIDs...)
	if err != nil {
		return nil, err
	}
	for cid := range all {
		if !l.held(cid) {
			delete(all, cid)
		}
	}
	return all, nil
}
