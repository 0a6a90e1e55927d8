package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/gatewire/gatewire/internal/clientid"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
)

// The calls beyond the seed's: broadcasts, groups, queries and sessions.

func (a *api) SendToAll(ctx context.Context, data []byte, binary bool, clientIDs, exclude []string) (int, error) {
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	if len(clientIDs) > 0 {
		byGateway, err := byGatewayOf(clientIDs, toSet(exclude))
		if err != nil {
			return 0, err
		}
		return a.sendToGateways(ctx, byGateway, data, binary)
	}
	// One SendAll per live gateway, each carrying only its own exclusions.
	excludeBy := make(map[string][]string)
	for _, id := range exclude {
		if gw, err := clientid.GatewayOf(id); err == nil {
			excludeBy[gw] = append(excludeBy[gw], id)
		}
	}
	var (
		mu        sync.Mutex
		delivered int
	)
	err := a.eachGateway(ctx, func(ctx context.Context, gw string, l *gatewayLink) error {
		r, err := l.call(ctx, &linkv1.Command{Kind: &linkv1.Command_SendAll{SendAll: &linkv1.SendAll{
			Data: data, Binary: binary, Exclude: excludeBy[gw]}}})
		if err != nil {
			return err
		}
		mu.Lock()
		delivered += int(r.GetDelivered())
		mu.Unlock()
		return nil
	})
	return delivered, err
}

// byGatewayOf groups clientIDs, less those in skip, by their gateway.
func byGatewayOf(clientIDs []string, skip map[string]struct{}) (map[string][]string, error) {
	byGateway := make(map[string][]string)
	for _, id := range clientIDs {
		if _, ok := skip[id]; ok {
			continue
		}
		gw, err := clientid.GatewayOf(id)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
		byGateway[gw] = append(byGateway[gw], id)
	}
	return byGateway, nil
}

func (a *api) Post(ctx context.Context, clientIDs []string, data []byte, binary bool) error {
	byGateway, err := byGatewayOf(clientIDs, nil)
	if err != nil {
		return err
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	var errs []error
	for gw, ids := range byGateway {
		l, err := a.w().linkTo(gw)
		if errors.Is(err, ErrNotFound) {
			continue // the gateway died after the lookup: its clients are gone
		}
		if err == nil {
			err = l.post(ctx, sendCommand(ids, data, binary))
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (a *api) SendToGroup(ctx context.Context, groups []string, data []byte, binary bool, exclude []string) (int, error) {
	if err := nonEmpty("group", groups); err != nil {
		return 0, err
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	members, err := a.dir.GroupMembers(ctx, groups...)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	skip := toSet(exclude)
	seen := make(map[string]struct{})
	byGateway := make(map[string][]string)
	for _, ids := range members {
		for _, id := range ids {
			if _, ok := skip[id]; ok {
				continue
			}
			if _, dup := seen[id]; dup { // a member of several of the groups gets it once
				continue
			}
			seen[id] = struct{}{}
			if gw, err := clientid.GatewayOf(id); err == nil {
				byGateway[gw] = append(byGateway[gw], id)
			}
		}
	}
	return a.sendToGateways(ctx, byGateway, data, binary)
}

func (a *api) DestroyClient(ctx context.Context, clientID string) error {
	_, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_Close{Close: &linkv1.Close{ClientId: clientID, Destroy: true}}})
	return err
}

func (a *api) IsOnline(ctx context.Context, clientID string) (bool, error) {
	r, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_Query{Query: &linkv1.Query{ClientId: clientID, CountOnly: true}}})
	if errors.Is(err, ErrNotFound) {
		return false, nil // its gateway is gone
	}
	if err != nil {
		return false, err
	}
	return r.GetCount() > 0, nil
}

func (a *api) UIDsOnline(ctx context.Context, uids []string) (map[string]bool, error) {
	ids, err := a.ClientIDsByUIDs(ctx, uids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(uids))
	for _, u := range uids {
		out[u] = len(ids[u]) > 0
	}
	return out, nil
}

func (a *api) ClientIDsByUIDs(ctx context.Context, uids []string) (map[string][]string, error) {
	if err := nonEmpty("uid", uids); err != nil {
		return nil, err
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	m, err := a.dir.ClientIDs(ctx, uids...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return m, nil
}

func (a *api) JoinGroup(ctx context.Context, clientID, group string) error {
	if group == "" {
		return fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	_, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_JoinGroup{JoinGroup: &linkv1.JoinGroup{ClientId: clientID, Group: group}}})
	return err
}

func (a *api) LeaveGroup(ctx context.Context, clientID, group string) error {
	if group == "" {
		return fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	_, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_LeaveGroup{LeaveGroup: &linkv1.LeaveGroup{ClientId: clientID, Group: group}}})
	return err
}

func (a *api) Ungroup(ctx context.Context, group string) (int, error) {
	if group == "" {
		return 0, fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	members, err := a.dir.GroupMembers(ctx, group)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	gateways := make(map[string]bool)
	for _, id := range members[group] {
		if gw, err := clientid.GatewayOf(id); err == nil {
			gateways[gw] = true
		}
	}
	var (
		mu      sync.Mutex
		removed int
	)
	err = a.onGateways(ctx, gateways, func(ctx context.Context, _ string, l *gatewayLink) error {
		r, err := l.call(ctx, &linkv1.Command{Kind: &linkv1.Command_Ungroup{Ungroup: &linkv1.Ungroup{Group: group}}})
		if err != nil {
			return err
		}
		mu.Lock()
		removed += int(r.GetCount())
		mu.Unlock()
		return nil
	})
	return removed, err
}

func (a *api) GroupMembers(ctx context.Context, groups []string) (map[string]GroupMembers, error) {
	if err := nonEmpty("group", groups); err != nil {
		return nil, err
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	members, err := a.dir.GroupMembers(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var all []string
	for _, ids := range members {
		all = append(all, ids...)
	}
	uids := map[string]string{}
	if len(all) > 0 {
		if uids, err = a.dir.UIDs(ctx, all...); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	out := make(map[string]GroupMembers, len(members))
	for g, ids := range members {
		gm := GroupMembers{ClientIDs: ids}
		for _, id := range ids {
			if u := uids[id]; u != "" && !slices.Contains(gm.UIDs, u) {
				gm.UIDs = append(gm.UIDs, u)
			}
		}
		out[g] = gm
	}
	return out, nil
}

func (a *api) ClientCount(ctx context.Context, group string) (int, error) {
	if group != "" {
		m, err := a.GroupMembers(ctx, []string{group})
		return len(m[group].ClientIDs), err
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		count int
	)
	err := a.eachGateway(ctx, func(ctx context.Context, _ string, l *gatewayLink) error {
		r, err := l.call(ctx, &linkv1.Command{Kind: &linkv1.Command_Query{Query: &linkv1.Query{CountOnly: true}}})
		if err != nil {
			return err
		}
		mu.Lock()
		count += int(r.GetCount())
		mu.Unlock()
		return nil
	})
	return count, err
}

func (a *api) Clients(ctx context.Context, group string) ([]ClientInfo, error) {
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	query := func(ctx context.Context, _ string, l *gatewayLink) ([]ClientInfo, error) {
		r, err := l.call(ctx, &linkv1.Command{Kind: &linkv1.Command_Query{Query: &linkv1.Query{Group: group}}})
		if err != nil {
			return nil, err
		}
		out := make([]ClientInfo, 0, len(r.GetClients()))
		for _, c := range r.GetClients() {
			out = append(out, ClientInfo{ClientID: c.GetClientId(), UID: c.GetUid(), Groups: c.GetGroups(), Session: c.GetSession()})
		}
		return out, nil
	}
	var gateways map[string]bool // nil: every live gateway
	if group != "" {
		// Only the gateways holding members are asked.
		members, err := a.dir.GroupMembers(ctx, group)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		gateways = make(map[string]bool)
		for _, id := range members[group] {
			if gw, err := clientid.GatewayOf(id); err == nil {
				gateways[gw] = true
			}
		}
	}
	var (
		mu  sync.Mutex
		out []ClientInfo
	)
	collect := func(ctx context.Context, gw string, l *gatewayLink) error {
		infos, err := query(ctx, gw, l)
		if err != nil {
			return err
		}
		mu.Lock()
		out = append(out, infos...)
		mu.Unlock()
		return nil
	}
	var err error
	if gateways == nil {
		err = a.eachGateway(ctx, collect)
	} else {
		err = a.onGateways(ctx, gateways, collect)
	}
	return out, err
}

func (a *api) SetSession(ctx context.Context, clientID string, session json.RawMessage) error {
	_, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_SetSession{SetSession: &linkv1.SetSession{ClientId: clientID, Session: session}}})
	return err
}

func (a *api) UpdateSession(ctx context.Context, clientID string, patch json.RawMessage) error {
	_, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_UpdateSession{UpdateSession: &linkv1.UpdateSession{ClientId: clientID, Patch: patch}}})
	return err
}

func (a *api) GetSession(ctx context.Context, clientID string) (json.RawMessage, error) {
	r, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_GetSession{GetSession: &linkv1.GetSession{ClientId: clientID}}})
	if err != nil {
		return nil, err
	}
	if len(r.GetSession()) == 0 {
		return nil, nil
	}
	return r.GetSession(), nil
}

// eachGateway runs f on every live gateway in parallel; see onGateways.
func (a *api) eachGateway(ctx context.Context, f func(context.Context, string, *gatewayLink) error) error {
	a.mu.RLock()
	gateways := make(map[string]bool, len(a.live))
	for id := range a.live {
		gateways[id] = true
	}
	a.mu.RUnlock()
	return a.onGateways(ctx, gateways, f)
}

// onGateways runs f on each of the gateways in parallel, bounded by ctx: a
// slow or dead gateway costs at most the deadline, and the others' results
// stand. Gateways that fail are reported in an *IncompleteError.
func (a *api) onGateways(ctx context.Context, gateways map[string]bool, f func(context.Context, string, *gatewayLink) error) error {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		missing []string
	)
	for gw := range gateways {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := a.w().linkTo(gw)
			if errors.Is(err, ErrNotFound) {
				return // no longer live: it holds no clients
			}
			if err == nil {
				err = f(ctx, gw, l)
			}
			if err != nil {
				mu.Lock()
				missing = append(missing, gw)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(missing) > 0 {
		slices.Sort(missing)
		return &IncompleteError{Gateways: missing}
	}
	return nil
}

func toSet(ids []string) map[string]struct{} {
	m := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	return m
}

// nonEmpty checks a list of uids or groups.
func nonEmpty(what string, xs []string) error {
	if len(xs) == 0 {
		return fmt.Errorf("%w: no %s given", ErrInvalidArgument, what)
	}
	for _, x := range xs {
		if x == "" {
			return fmt.Errorf("%w: empty %s", ErrInvalidArgument, what)
		}
	}
	return nil
}
