package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gatewire/gatewire/internal/clientid"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
)

// api implements API on a Worker.
type api Worker

func (a *api) w() *Worker { return (*Worker)(a) }

// withTimeout applies CallTimeout when ctx has no deadline. A ctx with a
// deadline is used as it is: nothing in a call cancels it early, so a
// derived context would only cost an allocation and a registration with
// the parent on every call.
func (a *api) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, a.cfg.CallTimeout)
}

// callClient sends one command to the gateway holding clientID.
func (a *api) callClient(ctx context.Context, clientID string, cmd *linkv1.Command) (*linkv1.CommandResult, error) {
	l, err := a.w().link(clientID)
	if err != nil {
		return nil, err
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	r, err := l.call(ctx, cmd)
	if err == nil {
		a.w().states.note(clientID, r.GetState())
	}
	return r, err
}

func (a *api) SendToClient(ctx context.Context, clientID string, data []byte, binary bool) error {
	_, err := a.callClient(ctx, clientID, sendCommand([]string{clientID}, data, binary))
	return err
}

func (a *api) SendToUID(ctx context.Context, uids []string, data []byte, binary bool) (int, error) {
	if len(uids) == 0 {
		return 0, fmt.Errorf("%w: no uid given", ErrInvalidArgument)
	}
	for _, u := range uids {
		if u == "" {
			return 0, fmt.Errorf("%w: empty uid", ErrInvalidArgument)
		}
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	byUID, err := a.dir.ClientIDs(ctx, uids...)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	byGateway := make(map[string][]string)
	for _, ids := range byUID {
		for _, id := range ids {
			gw, err := clientid.GatewayOf(id)
			if err != nil {
				continue
			}
			byGateway[gw] = append(byGateway[gw], id)
		}
	}
	return a.sendToGateways(ctx, byGateway, data, binary)
}

// sendToGateways sends one command per gateway, in parallel, carrying the
// payload once, and sums the deliveries. Failures of some gateways are
// reported after the others were tried. A send to one gateway (a chat
// message's usual case) runs on the caller's goroutine.
func (a *api) sendToGateways(ctx context.Context, byGateway map[string][]string, data []byte, binary bool) (int, error) {
	if len(byGateway) == 1 {
		for gw, ids := range byGateway {
			return a.sendToGateway(ctx, gw, ids, data, binary)
		}
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		delivered int
		errs      []error
	)
	for gw, ids := range byGateway {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := a.sendToGateway(ctx, gw, ids, data, binary)
			mu.Lock()
			defer mu.Unlock()
			delivered += n
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return delivered, errors.Join(errs...)
}

// sendCommand is the command that writes data to the connections ids of
// one gateway.
func sendCommand(ids []string, data []byte, binary bool) *linkv1.Command {
	return &linkv1.Command{Kind: &linkv1.Command_Send{Send: &linkv1.Send{ClientIds: ids, Data: data, Binary: binary}}}
}

func (a *api) sendToGateway(ctx context.Context, gatewayID string, ids []string, data []byte, binary bool) (int, error) {
	l, err := a.w().linkTo(gatewayID)
	if errors.Is(err, ErrNotFound) {
		return 0, nil // the gateway died after the lookup: its clients are gone
	}
	if err != nil {
		return 0, err
	}
	r, err := l.call(ctx, sendCommand(ids, data, binary))
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	return int(r.GetDelivered()), err
}

func (a *api) IsUIDOnline(ctx context.Context, uid string) (bool, error) {
	ids, err := a.ClientIDsByUID(ctx, uid)
	return len(ids) > 0, err
}

func (a *api) BindUID(ctx context.Context, clientID, uid string) error {
	if uid == "" {
		return fmt.Errorf("%w: empty uid", ErrInvalidArgument)
	}
	_, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_Bind{Bind: &linkv1.Bind{ClientId: clientID, Uid: uid}}})
	return err
}

func (a *api) UnbindUID(ctx context.Context, clientID, uid string) error {
	if uid == "" {
		return fmt.Errorf("%w: empty uid", ErrInvalidArgument)
	}
	_, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_Unbind{Unbind: &linkv1.Unbind{ClientId: clientID, Uid: uid}}})
	return err
}

func (a *api) ClientIDsByUID(ctx context.Context, uid string) ([]string, error) {
	if uid == "" {
		return nil, fmt.Errorf("%w: empty uid", ErrInvalidArgument)
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	m, err := a.dir.ClientIDs(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return m[uid], nil
}

func (a *api) UIDByClientID(ctx context.Context, clientID string) (string, error) {
	if _, err := clientid.GatewayOf(clientID); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	uid, err := a.dir.UID(ctx, clientID)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return uid, nil
}

func (a *api) CloseClient(ctx context.Context, clientID string, data []byte) error {
	_, err := a.callClient(ctx, clientID, &linkv1.Command{Kind: &linkv1.Command_Close{Close: &linkv1.Close{ClientId: clientID, Data: data}}})
	return err
}
