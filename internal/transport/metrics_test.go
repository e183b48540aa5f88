package transport

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func newTestMetrics(t *testing.T, module string) *Metrics {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry(), module)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// value reads a counter or a gauge.
func value(c prometheus.Metric) int {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return int(m.Counter.GetValue())
	}
	return int(m.Gauge.GetValue())
}

// TestMetricsCountWhatTheWireCarries: each side's counts of frames and
// envelopes agree with what gRPC carried, as an interceptor on the server
// counts it, and the streams gauges go up and back down.
func TestMetricsCountWhatTheWireCarries(t *testing.T) {
	sm, cm := newTestMetrics(t, "b"), newTestMetrics(t, "a")
	srv := NewServerWith(echoData{}, "", ServerConfig{Metrics: sm})
	addr, wire := serveCounting(t, srv)
	client := NewClientWith(fixedResolver(addr), "", ClientConfig{Metrics: cm})

	const conc, n = 32, 40
	sendConcurrently(t, client, conc, n)
	// A side counts a frame once its write returns, which may be after the
	// other side has read it: the counts agree once the writers are done.
	checks := func() []string {
		var wrong []string
		for _, c := range []struct {
			what      string
			got, want int
		}{
			{"server: frames received", value(sm.server.received.frames), int(wire.framesIn.Load())},
			{"server: envelopes received", value(sm.server.received.envelopes), int(wire.envsIn.Load())},
			{"server: frames sent", value(sm.server.sent.frames), int(wire.framesOut.Load())},
			{"server: envelopes sent", value(sm.server.sent.envelopes), int(wire.envsOut.Load())},
			{"client: frames sent", value(cm.client.sent.frames), int(wire.framesIn.Load())},
			{"client: envelopes sent", value(cm.client.sent.envelopes), int(wire.envsIn.Load())},
			{"client: frames received", value(cm.client.received.frames), int(wire.framesOut.Load())},
			{"client: envelopes received", value(cm.client.received.envelopes), int(wire.envsOut.Load())},
			{"client: envelopes sent, at least the messages", min(value(cm.client.sent.envelopes), conc*n), conc * n},
			{"server side of the client's metrics: frames", value(cm.server.sent.frames) + value(cm.server.received.frames), 0},
			{"client side of the server's metrics: frames", value(sm.client.sent.frames) + value(sm.client.received.frames), 0},
			{"client: streams open", value(cm.clientStreams), 1},
			{"server: streams open", value(sm.serverStreams), 1},
			{"client: unavailable", value(cm.unavailable), 0},
		} {
			if c.got != c.want {
				wrong = append(wrong, fmt.Sprintf("%s: %d, want %d", c.what, c.got, c.want))
			}
		}
		return wrong
	}
	for deadline := time.Now().Add(10 * time.Second); len(checks()) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			for _, w := range checks() {
				t.Error(w)
			}
			t.FailNow()
		}
	}
	t.Logf("client sent %d envelopes in %d frames", value(cm.client.sent.envelopes), value(cm.client.sent.frames))

	client.Close()
	for deadline := time.Now().Add(10 * time.Second); value(cm.clientStreams) != 0 || value(sm.serverStreams) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after Close: %d client and %d server streams open, want 0", value(cm.clientStreams), value(sm.serverStreams))
		}
	}
}

// TestMetricsCountUnavailableReplicas: a message that a replica does not take
// (nothing listens at its address) is counted, and goes to the other.
func TestMetricsCountUnavailableReplicas(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	addr, _ := serveCounting(t, NewServer(echoData{}, ""))
	cm := newTestMetrics(t, "a")
	client := NewClientWith(twoReplicas{gone, addr}, "", ClientConfig{Metrics: cm})
	defer client.Close()

	sendConcurrently(t, client, 1, 10) // the replicas are taken in turn
	if got := value(cm.unavailable); got == 0 || got > 10 {
		t.Errorf("unavailable: %d, want 1 to 10 of 10 messages", got)
	}
}

// TestNilMetricsCountNothing: a client and a server without metrics work.
func TestNilMetricsCountNothing(t *testing.T) {
	addr, _ := serveCounting(t, NewServer(echoData{}, ""))
	client := NewClient(fixedResolver(addr), "")
	defer client.Close()
	sendConcurrently(t, client, 4, 10)
}
