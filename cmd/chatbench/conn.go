package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewire/gatewire/internal/bindtoken"
)

// bg is the context of every read and write after setup: a context
// without Done costs the WebSocket library no timer per frame. Connections
// end with CloseNow, which ends their reads.
var bg = context.Background()

// clock is the benchmark's time base: monotonic nanoseconds since start.
var clockStart = time.Now()

func now() int64 { return int64(time.Since(clockStart)) }

// Byte patterns of the frames the benchmark reads. The server's frames are
// flat JSON objects; the benchmark finds the few fields it needs instead
// of decoding every frame.
var (
	patType     = []byte(`"type":"`)
	patClientID = []byte(`"client_id":"`)
	patRaw      = []byte(`"raw":"`)
	patCode     = []byte(`"code":"`)
)

// strField returns the value of the first string field whose `"key":"`
// pattern is pat, up to the next quote. It suits values without escapes
// (types, client_ids, the benchmark's own payloads), and returns nil when
// the field is missing.
func strField(f, pat []byte) []byte {
	i := bytes.Index(f, pat)
	if i < 0 {
		return nil
	}
	v := f[i+len(pat):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

// leadingInt parses the decimal digits at the start of b.
func leadingInt(b []byte) (int64, bool) {
	var v int64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' && n < 18 {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	return v, n > 0
}

// conn is one benchmark client connection.
type conn struct {
	ws  *websocket.Conn
	id  string // client_id from the init frame
	uid string
	buf []byte // the last frame read; reused for every frame
}

// next reads the next data frame into c.buf and returns it (valid until
// the next call).
func (c *conn) next(ctx context.Context) ([]byte, error) {
	_, r, err := c.ws.Reader(ctx)
	if err != nil {
		return nil, err
	}
	n := 0
	for {
		if n == len(c.buf) {
			grown := make([]byte, 2*len(c.buf))
			copy(grown, c.buf)
			c.buf = grown
		}
		m, err := r.Read(c.buf[n:])
		n += m
		if err == io.EOF {
			return c.buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// loop reads frames until the connection ends, handing each to h.
func (c *conn) loop(h func(f []byte)) {
	for {
		f, err := c.next(bg)
		if err != nil {
			return
		}
		h(f)
	}
}

// dialer opens bound connections.
type dialer struct {
	urls      []string
	clients   []*http.Client // one per source address (one with none)
	sources   []string       // the source addresses, "" for the kernel's choice
	jwtSecret []byte
	tokenTTL  time.Duration
}

// newDialer prepares connections to urls from the source addresses src:
// "auto" (127.0.0.1 to 127.0.0.<autoSources> when every URL is on
// loopback, else the kernel's choice), "none", or a comma-separated list
// of IPs.
func newDialer(urls []string, src string, jwtSecret string, ttl time.Duration) (*dialer, error) {
	d := &dialer{urls: urls, jwtSecret: []byte(jwtSecret), tokenTTL: ttl}
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "ws" && pu.Scheme != "wss") || pu.Host == "" {
			return nil, fmt.Errorf("-ws %q: want ws://host:port/path", u)
		}
	}
	var ips []net.IP
	switch src {
	case "none", "":
	case "auto":
		if allLoopback(urls) {
			for i := 1; i <= autoSources; i++ {
				ips = append(ips, net.IPv4(127, 0, 0, byte(i)))
			}
		}
	default:
		for _, s := range strings.Split(src, ",") {
			ip := net.ParseIP(strings.TrimSpace(s))
			if ip == nil {
				return nil, fmt.Errorf("-src: %q is not an IP address", s)
			}
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		d.sources = []string{""}
		d.clients = []*http.Client{newHTTPClient(nil)}
		return d, nil
	}
	for _, ip := range ips {
		d.sources = append(d.sources, ip.String())
		d.clients = append(d.clients, newHTTPClient(ip))
	}
	return d, nil
}

// autoSources is how many loopback source addresses -src auto uses: each
// gives about 28,000 ephemeral ports towards each gateway.
const autoSources = 8

func allLoopback(urls []string) bool {
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			return false
		}
		h := pu.Hostname()
		if h == "localhost" {
			continue
		}
		ip := net.ParseIP(h)
		if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// newHTTPClient returns the client of the WebSocket handshakes from source
// address ip (nil: the kernel's choice). No proxy is used.
func newHTTPClient(ip net.IP) *http.Client {
	nd := &net.Dialer{Timeout: 10 * time.Second, Control: noPortReservation}
	if ip != nil {
		nd.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:         nd.DialContext,
		MaxIdleConnsPerHost: -1, // upgraded connections never return to the pool
	}}
}

// token returns a bind token for uid, or "" without -jwt-secret.
func (d *dialer) token(uid string) (string, error) {
	if len(d.jwtSecret) == 0 {
		return "", nil
	}
	return bindtoken.Sign(d.jwtSecret, uid, d.tokenTTL)
}

// errRefused is a bind the server refused; retrying will not help.
var errRefused = errors.New("bind refused")

// open connects to url from source number src, reads the init frame and
// binds the connection to uid.
func (d *dialer) open(ctx context.Context, u string, src int, uid string) (*conn, error) {
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: d.clients[src%len(d.clients)]})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	c := &conn{ws: ws, uid: uid, buf: make([]byte, 512)}
	if err := d.bind(ctx, c); err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	return c, nil
}

func (d *dialer) bind(ctx context.Context, c *conn) error {
	f, err := c.next(ctx)
	if err != nil {
		return fmt.Errorf("read init: %w", err)
	}
	if string(strField(f, patType)) != "init" {
		return fmt.Errorf("first frame %.200s is not init", f)
	}
	c.id = string(strField(f, patClientID))
	if c.id == "" {
		return fmt.Errorf("init frame %.200s has no client_id", f)
	}
	msg := `{"type":"bind","client_id":` + strconv.Quote(c.id) + `,"frontId":` + strconv.Quote(c.uid)
	tok, err := d.token(c.uid)
	if err != nil {
		return fmt.Errorf("sign bind token: %w", err)
	}
	if tok != "" {
		msg += `,"token":` + strconv.Quote(tok)
	}
	msg += "}"
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return fmt.Errorf("write bind: %w", err)
	}
	for {
		f, err := c.next(ctx)
		if err != nil {
			return fmt.Errorf("read bound: %w", err)
		}
		switch string(strField(f, patType)) {
		case "bound":
			return nil
		case "error":
			hint := ""
			if string(strField(f, patCode)) == "token_required" {
				hint = " (start the workers with -insecure-bind, or give chatbench their -jwt-secret)"
			}
			return fmt.Errorf("%w: %.300s%s", errRefused, f, hint)
		}
	}
}

// fleet is the benchmark's set of connections.
type fleet struct {
	conns []*conn
	wg    sync.WaitGroup // the readers
}

// plan says where connection i goes and how its frames are handled.
type plan struct {
	n       int
	url     func(i int) string
	uid     func(i int) string
	handler func(i int, c *conn) func(f []byte)
	// srcBase offsets the source address rotation (several processes).
	srcBase int
}

// openAll opens p.n bound connections, at most conc at a time, each tried
// up to three times; each connection's reader starts as soon as it is
// bound, so that it answers the gateway's pings while the others connect.
// It reports progress on stderr.
func openAll(ctx context.Context, d *dialer, p plan, conc int, quiet bool) (*fleet, error) {
	fl := &fleet{conns: make([]*conn, p.n)}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, p.n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= p.n || ctx.Err() != nil {
					return
				}
				var c *conn
				var err error
				for attempt := 1; attempt <= 3; attempt++ {
					c, err = d.open(ctx, p.url(i), p.srcBase+i, p.uid(i))
					if err == nil || errors.Is(err, errRefused) || ctx.Err() != nil {
						break
					}
					time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
				}
				if err != nil {
					if strings.Contains(err.Error(), "429") {
						err = fmt.Errorf("%w (the gateway's -max-conns-per-ip: raise it, or spread the connections over more -src addresses)", err)
					}
					cancel(fmt.Errorf("connection %d (%s, uid %s): %w", i, p.url(i), p.uid(i), err))
					return
				}
				fl.conns[i] = c
				h := p.handler(i, c)
				fl.wg.Go(func() { c.loop(h) })
				done.Add(1)
			}
		})
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				if !quiet {
					logf("bound %d/%d connections", done.Load(), p.n)
				}
			}
		}
	}()
	wg.Wait()
	close(stopProgress)
	<-progressDone
	if err := context.Cause(ctx); err != nil && done.Load() < int64(p.n) {
		fl.close()
		return nil, err
	}
	return fl, nil
}

// close ends every connection without a close handshake and waits for
// the readers.
func (fl *fleet) close() {
	for _, c := range fl.conns {
		if c != nil {
			_ = c.ws.CloseNow()
		}
	}
	fl.wg.Wait()
}

// logf writes a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "chatbench: "+format+"\n", args...)
}
