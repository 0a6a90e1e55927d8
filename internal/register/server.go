package register

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gatewire/gatewire/internal/clientid"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// Purger removes a dead gateway's directory entries (directory.Directory
// satisfies it).
type Purger interface {
	PurgeGateway(ctx context.Context, gatewayID string) (map[string]string, error)
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Lease is how long a gateway stays live without a heartbeat; zero means
	// 5s.
	Lease time.Duration
	// Heartbeat is how often gateways are told to renew; zero means Lease/5.
	Heartbeat time.Duration
	// Poll is how often the table is re-read to notice leases renewed or
	// lapsed at other replicas; zero means Lease/10.
	Poll time.Duration
	// Timeout bounds each table and directory call; zero means 2s.
	Timeout time.Duration
	// StartGrace is how long after Run starts no lease lapses (see Run);
	// zero means Lease, negative means no grace.
	StartGrace time.Duration
}

func (c *ServerConfig) fill() error {
	if c.Lease == 0 {
		c.Lease = 5 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = c.Lease / 5
	}
	if c.Poll == 0 {
		c.Poll = c.Lease / 10
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.StartGrace == 0 {
		c.StartGrace = c.Lease
	}
	if c.Lease < 0 || c.Heartbeat <= 0 || c.Heartbeat >= c.Lease || c.Poll <= 0 {
		return fmt.Errorf("register: need 0 < heartbeat (%v) < lease (%v) and poll > 0", c.Heartbeat, c.Lease)
	}
	return nil
}

// Server implements registerv1.RegisterServiceServer. Run must be running
// for leases to lapse and watchers to hear of other replicas' changes.
type Server struct {
	registerv1.UnimplementedRegisterServiceServer

	cfg   ServerConfig
	table Table
	purge Purger
	log   *slog.Logger

	// graceUntil is StartGrace after Run started: leases that expire before
	// it count as expiring then (see Run). Only Run's goroutine uses it.
	graceUntil time.Time

	mu      sync.Mutex
	live    []*registerv1.Gateway // current live list, sorted by id
	changed chan struct{}         // closed and replaced when live changes
	kick    chan struct{}         // asks Run to refresh now
}

// NewServer returns a Server keeping leases in table and purging dead
// gateways' entries through purge.
func NewServer(cfg ServerConfig, table Table, purge Purger, log *slog.Logger) (*Server, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, table: table, purge: purge, log: log,
		changed: make(chan struct{}), kick: make(chan struct{}, 1)}, nil
}

// Run expires lapsed leases and refreshes the live list until ctx ends.
//
// For its first lease (StartGrace) it expires no lease: one that lapsed
// before may have lapsed only because no register was there to renew it
// (this one was being restarted, and the gateway's reconnection backs off),
// and its gateway gets a whole lease to reach this one and renew, as it
// would have had. Until then the gateway stays live and keeps its directory
// entries; if it never renews, it is dropped and purged once the grace is
// over. A lease renewed since the start expires after the grace anyway.
func (s *Server) Run(ctx context.Context) error {
	s.graceUntil = time.Now().Add(max(0, s.cfg.StartGrace))
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		s.refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kick:
		}
	}
}

// refresh re-reads the table, drops lapsed leases (purging their entries)
// and publishes the live list if it changed.
func (s *Server) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	leases, err := s.table.List(ctx)
	if err != nil {
		s.log.Warn("list leases", "err", err)
		return
	}
	now := time.Now()
	live := make([]*registerv1.Gateway, 0, len(leases))
	for _, l := range leases {
		id := l.Gateway.GetId()
		expires := l.Expires
		if !l.Purging && expires.Before(s.graceUntil) {
			expires = s.graceUntil
		}
		if !expires.Before(now) {
			if !l.Purging {
				live = append(live, l.Gateway)
			}
			continue
		}
		// Lapsed (or a tombstone whose purge was abandoned): claim the purge.
		// The tombstone keeps the gateway from renewing until the purge is
		// over, so that what it re-publishes is not purged too.
		claimed, err := s.table.Expire(ctx, id, now, now.Add(s.cfg.Lease))
		if err != nil {
			s.log.Warn("expire lease", "gateway_id", id, "err", err)
			continue
		}
		if !claimed {
			continue
		}
		s.log.Info("gateway lease lapsed", "gateway_id", id)
		if s.purgeGateway(ctx, id) {
			if err := s.table.Forget(ctx, id); err != nil {
				s.log.Warn("forget tombstone", "gateway_id", id, "err", err)
			}
		}
	}
	s.publish(live)
}

// purgeGateway removes a dead gateway's directory entries and reports
// whether it succeeded.
func (s *Server) purgeGateway(ctx context.Context, id string) bool {
	entries, err := s.purge.PurgeGateway(ctx, id)
	if err != nil {
		s.log.Error("purge gateway entries", "gateway_id", id, "err", err)
		return false
	}
	s.log.Info("purged gateway entries", "gateway_id", id, "entries", len(entries))
	return true
}

func (s *Server) publish(live []*registerv1.Gateway) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.EqualFunc(s.live, live, func(a, b *registerv1.Gateway) bool { return proto.Equal(a, b) }) {
		return
	}
	s.live = live
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) snapshot() ([]*registerv1.Gateway, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live, s.changed
}

func (s *Server) refreshSoon() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Announce implements registerv1.RegisterServiceServer.
func (s *Server) Announce(stream registerv1.RegisterService_AnnounceServer) error {
	ctx := stream.Context()
	var id string
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err // the lease lapses unless the gateway renews elsewhere
		}
		gw := req.GetGateway()
		if err := validGateway(gw); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if id != "" && gw.GetId() != id {
			return status.Error(codes.InvalidArgument, "gateway id changed mid-stream")
		}
		id = gw.GetId()
		tctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		if req.GetLeaving() {
			removed, err := s.table.Remove(tctx, id)
			if err == nil && removed {
				s.log.Info("gateway left", "gateway_id", id)
				s.purgeGateway(tctx, id)
			}
			cancel()
			s.refreshSoon()
			if err != nil {
				return status.Error(codes.Unavailable, err.Error())
			}
			return nil
		}
		fresh, err := s.table.Renew(tctx, gw, time.Now().Add(s.cfg.Lease))
		cancel()
		if errors.Is(err, ErrPurging) {
			return status.Error(codes.Unavailable, err.Error())
		}
		if err != nil {
			s.log.Warn("renew lease", "gateway_id", id, "err", err)
			return status.Error(codes.Unavailable, "lease table unavailable")
		}
		if fresh {
			s.log.Info("gateway announced", "gateway_id", id, "link_address", gw.GetLinkAddress())
			s.refreshSoon()
		}
		if err := stream.Send(&registerv1.AnnounceResponse{
			LeaseMillis:     uint32(s.cfg.Lease.Milliseconds()),
			HeartbeatMillis: uint32(s.cfg.Heartbeat.Milliseconds()),
			Fresh:           fresh,
		}); err != nil {
			return err
		}
	}
}

func validGateway(gw *registerv1.Gateway) error {
	if !clientid.ValidGatewayID(gw.GetId()) {
		return fmt.Errorf("invalid gateway id %q", gw.GetId())
	}
	if _, _, err := net.SplitHostPort(gw.GetLinkAddress()); err != nil {
		return fmt.Errorf("invalid link address %q: %v", gw.GetLinkAddress(), err)
	}
	return nil
}

// Watch implements registerv1.RegisterServiceServer.
func (s *Server) Watch(_ *registerv1.WatchRequest, stream registerv1.RegisterService_WatchServer) error {
	for {
		live, changed := s.snapshot()
		if err := stream.Send(&registerv1.WatchResponse{Gateways: live}); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}
