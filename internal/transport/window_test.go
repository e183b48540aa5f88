package transport

import (
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/tinymod/tinymod/internal/transport/transportpb"
)

// http2Preface opens a client's side of an HTTP/2 connection.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// pingCounter forwards TCP connections to target and counts the HTTP/2 PING
// frames (not their acknowledgements) either side sends.
type pingCounter struct{ pings atomic.Int64 }

func (p *pingCounter) serve(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			t.Cleanup(func() { in.Close(); out.Close() })
			go p.forward(in, out, true)
			go p.forward(out, in, false)
		}
	}()
	return ln.Addr().String()
}

// forward copies frames from src to dst, counting the PINGs.
func (p *pingCounter) forward(src, dst net.Conn, fromClient bool) {
	defer dst.Close()
	if fromClient {
		if _, err := io.CopyN(dst, src, int64(len(http2Preface))); err != nil {
			return
		}
	}
	var head [9]byte // length (24 bits), type, flags, stream
	for {
		if _, err := io.ReadFull(src, head[:]); err != nil {
			return
		}
		if head[3] == 0x6 && head[4]&0x1 == 0 {
			p.pings.Add(1)
		}
		if _, err := dst.Write(head[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint32(append([]byte{0}, head[:3]...)))
		if _, err := io.CopyN(dst, src, n); err != nil {
			return
		}
	}
}

// TestStreamsSendNoPings: while messages flow, neither side pings the other.
// gRPC, left to size its windows itself, pings about once a round trip to
// estimate the bandwidth-delay product, each PING a write and a read on
// both sides.
func TestStreamsSendNoPings(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions("")...)
	transportpb.RegisterModuleServer(g, NewServer(echoData{}, ""))
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	p := &pingCounter{}
	client := NewClient(fixedResolver(p.serve(t, ln.Addr().String())), "")
	defer client.Close()

	sendConcurrently(t, client, 8, 250)
	if n := p.pings.Load(); n != 0 {
		t.Errorf("%d PINGs while 2 000 messages flowed, want none", n)
	}
}
