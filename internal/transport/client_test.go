package transport

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

// peerCount is how many replicas the client keeps a connection to.
func (c *Client) peerCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.peers)
}

func waitPeers(t *testing.T, c *Client, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for c.peerCount() != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := c.peerCount(); got != want {
		t.Fatalf("the client keeps %d connections, want %d", got, want)
	}
}

// TestClientForgetsBrokenAndIdlePeers: the connection to a replica is closed
// and forgotten when it breaks, and when no message has used it for the idle
// timeout, but not while a message waits on it.
func TestClientForgetsBrokenAndIdlePeers(t *testing.T) {
	t.Run("broken", func(t *testing.T) {
		g, addr := serveOn(t, NewServer(answer{}, "t"))
		defer g.Stop()
		c := NewClient(fixedResolver(addr), "t")
		defer c.Close()
		if res := c.Send(context.Background(), "b", scheduler.Msg{To: "n.in"}); res != "ok" {
			t.Fatalf("send: %v", res)
		}
		waitPeers(t, c, 1, 0)
		g.Stop() // the replica goes away
		waitPeers(t, c, 0, 10*time.Second)
	})
	t.Run("idle", func(t *testing.T) {
		const idle = 100 * time.Millisecond
		n := &named{name: "A", release: make(chan struct{})}
		addr := listen(t, NewServer(n, "t"))
		c := NewClientWith(fixedResolver(addr), "t", ClientConfig{IdleTimeout: idle})
		defer c.Close()
		if res := c.Send(context.Background(), "b", scheduler.Msg{To: "n.in"}); res != "A" {
			t.Fatalf("send: %v", res)
		}
		waitPeers(t, c, 0, 10*time.Second)

		// A message in flight keeps its connection, however long it takes.
		slow := make(chan any, 1)
		go func() { slow <- c.Send(context.Background(), "b", scheduler.Msg{To: "n.in", Data: "slow"}) }()
		deadline := time.Now().Add(10 * time.Second)
		for n.holding.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		for end := time.Now().Add(5 * idle); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if c.peerCount() != 1 {
				t.Fatal("the connection was closed under a message in flight")
			}
		}
		close(n.release)
		if res := <-slow; res != "A slow" {
			t.Errorf("slow message: %v", res)
		}
		waitPeers(t, c, 0, 10*time.Second)
	})
}

// freezer forwards TCP connections to a target until frozen, then forwards
// nothing and closes nothing: a peer that vanished without a word.
type freezer struct {
	ln     net.Listener
	frozen chan struct{}
	once   sync.Once
	done   chan struct{}
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, frozen: make(chan struct{}), done: make(chan struct{})}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		close(f.done)
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-f.frozen:
				<-f.done
				return
			default:
			}
			if n > 0 {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					_ = dst.Close()
				}
				return
			}
		}
	}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			go pipe(out, in)
			go pipe(in, out)
		}
	}()
	return f
}

func (f *freezer) freeze() { f.once.Do(func() { close(f.frozen) }) }

// TestFrozenPeerIsNoticed: a replica that stops answering without closing
// its connection is found dead by keepalive pings: the message in flight
// fails (transient, never re-sent) and the connection is forgotten.
func TestFrozenPeerIsNoticed(t *testing.T) {
	n := &named{name: "A", release: make(chan struct{})}
	defer close(n.release)
	f := newFreezer(t, listen(t, NewServer(n, "t")))
	c := NewClientWith(fixedResolver(f.ln.Addr().String()), "t", ClientConfig{KeepaliveTime: MinKeepaliveTime, KeepaliveTimeout: time.Second})
	defer c.Close()

	slow := make(chan any, 1)
	go func() { slow <- c.Send(context.Background(), "b", scheduler.Msg{To: "n.in", Data: "slow"}) }()
	deadline := time.Now().Add(10 * time.Second)
	for n.holding.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n.holding.Load() != 1 {
		t.Fatal("the message never reached the replica")
	}
	f.freeze()
	select {
	case res := <-slow:
		err, ok := res.(error)
		if !ok || module.IsPermanent(err) || !strings.Contains(err.Error(), "in flight") {
			t.Errorf("message in flight to a frozen replica: got %v, want a transient error saying it was in flight", res)
		}
	case <-time.After(MinKeepaliveTime + 20*time.Second):
		t.Fatal("the message in flight to a frozen replica never ended")
	}
	waitPeers(t, c, 0, 10*time.Second)
}
