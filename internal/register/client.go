package register

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// retryDelay is how long a Client waits before trying the next replica.
const retryDelay = 500 * time.Millisecond

// Client talks to one or more register replicas, failing over between them.
type Client struct {
	conns []*grpc.ClientConn
	log   *slog.Logger
}

// NewClient prepares connections to the register replicas at addrs (dialled
// lazily). opts must carry the transport and the shared-secret credentials.
func NewClient(addrs []string, log *slog.Logger, opts ...grpc.DialOption) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("register: no register address given")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{log: log}
	for _, a := range addrs {
		cc, err := grpc.NewClient(a, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("register: client for %s: %w", a, err)
		}
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

// Close closes the connections.
func (c *Client) Close() error {
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// Announce holds gw's lease until ctx ends, then gives it up (waiting at most
// leaveTimeout). It fails over between replicas and never returns early.
// onFresh runs (on Announce's goroutine) whenever a renewal finds that the
// register had no live lease for gw after the first announce: the gateway's
// directory entries may have been purged and must be re-published.
func (c *Client) Announce(ctx context.Context, gw *registerv1.Gateway, leaveTimeout time.Duration, onFresh func(context.Context)) {
	first := true
	for i := 0; ctx.Err() == nil; i++ {
		cc := c.conns[i%len(c.conns)]
		err := c.announceOnce(ctx, cc, gw, &first, onFresh)
		if ctx.Err() != nil {
			break
		}
		c.log.Warn("announce to register failed; retrying", "register", cc.Target(), "err", err)
		sleep(ctx, retryDelay)
	}
	lctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	for _, cc := range c.conns {
		if err := leave(lctx, cc, gw); err == nil {
			return
		} else {
			c.log.Warn("leave register failed", "register", cc.Target(), "err", err)
		}
	}
}

func (c *Client) announceOnce(ctx context.Context, cc *grpc.ClientConn, gw *registerv1.Gateway, first *bool, onFresh func(context.Context)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := registerv1.NewRegisterServiceClient(cc).Announce(ctx)
	if err != nil {
		return err
	}
	heartbeat := time.Second
	for {
		if err := stream.Send(&registerv1.AnnounceRequest{Gateway: gw}); err != nil {
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if resp.GetFresh() && !*first && onFresh != nil {
			c.log.Warn("register had no lease for this gateway; re-publishing bindings", "register", cc.Target())
			onFresh(ctx)
		}
		*first = false
		if hb := time.Duration(resp.GetHeartbeatMillis()) * time.Millisecond; hb > 0 {
			heartbeat = hb
		}
		if !sleep(ctx, heartbeat) {
			return ctx.Err()
		}
	}
}

func leave(ctx context.Context, cc *grpc.ClientConn, gw *registerv1.Gateway) error {
	stream, err := registerv1.NewRegisterServiceClient(cc).Announce(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&registerv1.AnnounceRequest{Gateway: gw, Leaving: true}); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// Watch calls onChange with the live gateway list, once at start and after
// every change, until ctx ends. It fails over between replicas; while no
// replica answers, the last list stays in force.
func (c *Client) Watch(ctx context.Context, onChange func([]*registerv1.Gateway)) {
	for i := 0; ctx.Err() == nil; i++ {
		cc := c.conns[i%len(c.conns)]
		err := watchOnce(ctx, cc, onChange)
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("watch register failed; retrying", "register", cc.Target(), "err", err)
		sleep(ctx, retryDelay)
	}
}

func watchOnce(ctx context.Context, cc *grpc.ClientConn, onChange func([]*registerv1.Gateway)) error {
	stream, err := registerv1.NewRegisterServiceClient(cc).Watch(ctx, &registerv1.WatchRequest{})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		onChange(resp.GetGateways())
	}
}

// sleep waits d or until ctx ends and reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
