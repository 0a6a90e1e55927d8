package directory

import (
	"context"
	"fmt"
	"sync"

	"github.com/gatewire/gatewire/internal/clientid"
)

// Memory is a Directory held in the memory of one process, for the
// all-in-one deployment and for tests. It is safe for concurrent use; the
// zero value is not usable, call NewMemory.
type Memory struct {
	mu sync.RWMutex
	// uids maps a uid to the set of its client_ids.
	uids map[string]map[string]struct{}
	// gateways maps a gateway id to its entries, client_id → uid.
	gateways map[string]map[string]string
	// groups maps a group to the set of its members' client_ids.
	groups map[string]map[string]struct{}
	// memberships maps a gateway id to the group memberships of its
	// connections, so that PurgeGateway finds them.
	memberships map[string]map[membership]struct{}
}

// membership is one connection's membership of one group.
type membership struct {
	group, clientID string
}

var _ Directory = (*Memory)(nil)

// NewMemory returns an empty in-memory Directory.
func NewMemory() *Memory {
	return &Memory{
		uids:        make(map[string]map[string]struct{}),
		gateways:    make(map[string]map[string]string),
		groups:      make(map[string]map[string]struct{}),
		memberships: make(map[string]map[membership]struct{}),
	}
}

// Bind records that clientID is bound to uid.
func (m *Memory) Bind(ctx context.Context, clientID, uid string) error {
	gw, err := checkEntry("bind", clientID, uid)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("directory: bind %q to %q: %w", clientID, uid, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	entries := m.gateways[gw]
	if entries == nil {
		entries = make(map[string]string)
		m.gateways[gw] = entries
	}
	if old, ok := entries[clientID]; ok && old != uid {
		// The caller skipped Unbind; keep the two maps in step anyway.
		m.removeFromUID(old, clientID)
	}
	entries[clientID] = uid
	set := m.uids[uid]
	if set == nil {
		set = make(map[string]struct{})
		m.uids[uid] = set
	}
	set[clientID] = struct{}{}
	return nil
}

// Unbind removes the entry that binds clientID to uid, if there is one.
func (m *Memory) Unbind(ctx context.Context, clientID, uid string) error {
	gw, err := checkEntry("unbind", clientID, uid)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("directory: unbind %q from %q: %w", clientID, uid, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeFromUID(uid, clientID)
	if entries := m.gateways[gw]; entries[clientID] == uid {
		delete(entries, clientID)
		if len(entries) == 0 {
			delete(m.gateways, gw)
		}
	}
	return nil
}

// removeFromUID deletes clientID from the set of uid. m.mu must be held.
func (m *Memory) removeFromUID(uid, clientID string) {
	set := m.uids[uid]
	delete(set, clientID)
	if len(set) == 0 {
		delete(m.uids, uid)
	}
}

// ClientIDs returns the client_ids of each uid that has at least one.
func (m *Memory) ClientIDs(ctx context.Context, uids ...string) (map[string][]string, error) {
	if err := checkUIDs(uids); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("directory: client_ids of %d uids: %w", len(uids), err)
	}
	out := make(map[string][]string)
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, uid := range uids {
		set := m.uids[uid]
		if len(set) == 0 {
			continue
		}
		cids := make([]string, 0, len(set))
		for cid := range set {
			cids = append(cids, cid)
		}
		out[uid] = cids
	}
	return out, nil
}

// UID returns the uid clientID is bound to, or "" when it is not bound.
func (m *Memory) UID(ctx context.Context, clientID string) (string, error) {
	gw, err := checkClientID("uid of", clientID)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("directory: uid of %q: %w", clientID, err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.gateways[gw][clientID], nil
}

// PurgeGateway removes every entry and group membership of gateway
// gatewayID and returns the entries.
func (m *Memory) PurgeGateway(ctx context.Context, gatewayID string) (map[string]string, error) {
	if err := checkGatewayID("purge", gatewayID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("directory: purge gateway %q: %w", gatewayID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	entries := m.gateways[gatewayID]
	delete(m.gateways, gatewayID)
	for cid, uid := range entries {
		m.removeFromUID(uid, cid)
	}
	for ms := range m.memberships[gatewayID] {
		m.removeFromGroup(ms.group, ms.clientID)
	}
	delete(m.memberships, gatewayID)
	if entries == nil {
		entries = make(map[string]string)
	}
	return entries, nil
}

// GatewayEntries returns the entries of gateway gatewayID.
func (m *Memory) GatewayEntries(ctx context.Context, gatewayID string) (map[string]string, error) {
	if err := checkGatewayID("entries of", gatewayID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("directory: entries of gateway %q: %w", gatewayID, err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	entries := m.gateways[gatewayID]
	out := make(map[string]string, len(entries))
	for cid, uid := range entries {
		out[cid] = uid
	}
	return out, nil
}

// JoinGroup records that clientID is a member of group.
func (m *Memory) JoinGroup(ctx context.Context, clientID, group string) error {
	gw, err := checkMembership("join", clientID, group)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("directory: join %q to group %q: %w", clientID, group, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	set := m.groups[group]
	if set == nil {
		set = make(map[string]struct{})
		m.groups[group] = set
	}
	set[clientID] = struct{}{}
	ms := m.memberships[gw]
	if ms == nil {
		ms = make(map[membership]struct{})
		m.memberships[gw] = ms
	}
	ms[membership{group, clientID}] = struct{}{}
	return nil
}

// LeaveGroup removes clientID from group, if it is a member.
func (m *Memory) LeaveGroup(ctx context.Context, clientID, group string) error {
	gw, err := checkMembership("leave", clientID, group)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("directory: leave %q from group %q: %w", clientID, group, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeFromGroup(group, clientID)
	ms := m.memberships[gw]
	delete(ms, membership{group, clientID})
	if len(ms) == 0 {
		delete(m.memberships, gw)
	}
	return nil
}

// removeFromGroup deletes clientID from the set of group. m.mu must be held.
func (m *Memory) removeFromGroup(group, clientID string) {
	set := m.groups[group]
	delete(set, clientID)
	if len(set) == 0 {
		delete(m.groups, group)
	}
}

// GroupMembers returns the client_ids of each group that has at least one
// member.
func (m *Memory) GroupMembers(ctx context.Context, groups ...string) (map[string][]string, error) {
	if err := checkGroups(groups); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("directory: members of %d groups: %w", len(groups), err)
	}
	out := make(map[string][]string)
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, group := range groups {
		set := m.groups[group]
		if len(set) == 0 {
			continue
		}
		cids := make([]string, 0, len(set))
		for cid := range set {
			cids = append(cids, cid)
		}
		out[group] = cids
	}
	return out, nil
}

// UIDs returns the uid of each bound client_id among clientIDs.
func (m *Memory) UIDs(ctx context.Context, clientIDs ...string) (map[string]string, error) {
	gws, err := checkClientIDs(clientIDs)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("directory: uids of %d client_ids: %w", len(clientIDs), err)
	}
	out := make(map[string]string)
	m.mu.RLock()
	defer m.mu.RUnlock()
	for i, cid := range clientIDs {
		if uid, ok := m.gateways[gws[i]][cid]; ok {
			out[cid] = uid
		}
	}
	return out, nil
}

// checkEntry validates the arguments of Bind and Unbind and returns the
// gateway id of clientID. op names the operation in the error.
func checkEntry(op, clientID, uid string) (string, error) {
	gw, err := clientid.GatewayOf(clientID)
	if err != nil {
		return "", fmt.Errorf("directory: %s %q (uid %q): %w: %w", op, clientID, uid, ErrInvalid, err)
	}
	if uid == "" {
		return "", fmt.Errorf("directory: %s %q (uid %q): %w: empty uid", op, clientID, uid, ErrInvalid)
	}
	return gw, nil
}

// checkClientID validates clientID and returns its gateway id. op names the
// operation in the error.
func checkClientID(op, clientID string) (string, error) {
	gw, err := clientid.GatewayOf(clientID)
	if err != nil {
		return "", fmt.Errorf("directory: %s %q: %w: %w", op, clientID, ErrInvalid, err)
	}
	return gw, nil
}

// checkMembership validates the arguments of JoinGroup and LeaveGroup and
// returns the gateway id of clientID. op names the operation in the error.
func checkMembership(op, clientID, group string) (string, error) {
	gw, err := clientid.GatewayOf(clientID)
	if err != nil {
		return "", fmt.Errorf("directory: %s %q (group %q): %w: %w", op, clientID, group, ErrInvalid, err)
	}
	if group == "" {
		return "", fmt.Errorf("directory: %s %q (group %q): %w: empty group", op, clientID, group, ErrInvalid)
	}
	return gw, nil
}

// checkClientIDs validates clientIDs and returns the gateway id of each.
func checkClientIDs(clientIDs []string) ([]string, error) {
	gws := make([]string, len(clientIDs))
	for i, cid := range clientIDs {
		gw, err := clientid.GatewayOf(cid)
		if err != nil {
			return nil, fmt.Errorf("directory: uids: client_id %d of %d: %w: %w", i+1, len(clientIDs), ErrInvalid, err)
		}
		gws[i] = gw
	}
	return gws, nil
}

// checkGroups reports an ErrInvalid error when a group is empty.
func checkGroups(groups []string) error {
	for i, group := range groups {
		if group == "" {
			return fmt.Errorf("directory: group members: group %d of %d: %w: empty group", i+1, len(groups), ErrInvalid)
		}
	}
	return nil
}

// checkUIDs reports an ErrInvalid error when a uid is empty.
func checkUIDs(uids []string) error {
	for i, uid := range uids {
		if uid == "" {
			return fmt.Errorf("directory: client_ids: uid %d of %d: %w: empty uid", i+1, len(uids), ErrInvalid)
		}
	}
	return nil
}

// checkGatewayID reports an ErrInvalid error when gatewayID is not a gateway
// id. op names the operation in the error.
func checkGatewayID(op, gatewayID string) error {
	if !clientid.ValidGatewayID(gatewayID) {
		return fmt.Errorf("directory: %s gateway %q: %w: not a gateway id", op, gatewayID, ErrInvalid)
	}
	return nil
}
