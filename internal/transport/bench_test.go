package transport

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/internal/transport/transportpb"
	"github.com/tinymod/tinymod/module"
)

// answer is the cheapest handler: it answers at once.
type answer struct{}

func (answer) Module() module.Info                                    { return module.Info{Name: "b"} }
func (answer) Handle(context.Context, scheduler.Msg) any              { return "ok" }
func (s fixedResolver) Replicas(context.Context, string) []string     { return []string{string(s)} }
func (s fixedResolver) Leader(context.Context, string) (string, bool) { return string(s), true }
func (echoServer) Send(_ context.Context, m *transportpb.Message) (*transportpb.Result, error) {
	return &transportpb.Result{Data: []byte(`"ok"`)}, nil
}

type fixedResolver string

// echoServer is the baseline: a plain unary service returning a fixed answer.
type echoServer struct {
	transportpb.UnimplementedModuleServer
}

func serve(b *testing.B, register func(*grpc.Server)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions("t")...)
	register(g)
	go func() { _ = g.Serve(ln) }()
	b.Cleanup(g.Stop)
	return ln.Addr().String()
}

var payload = map[string]any{"who": "ann", "count": 3, "note": "a message of a few dozen bytes"}

// BenchmarkCrossModuleHop is one message to another module's node and its
// answer, on loopback with the token check on, beside a plain unary grpc-go
// call of the same service on one shared ClientConn with the same payload.
// It reports p50 and p99 latency besides ns/op (the inverse of throughput).
func BenchmarkCrossModuleHop(b *testing.B) {
	data := []byte(`{"count":3,"note":"a message of a few dozen bytes","who":"ann"}`)
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("unary-baseline/c=%d", conc), func(b *testing.B) {
			addr := serve(b, func(g *grpc.Server) { transportpb.RegisterModuleServer(g, echoServer{}) })
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := transportpb.NewModuleClient(conn)
			ctx := tokenContext(context.Background(), "t")
			run(b, conc, func() error {
				_, err := c.Send(ctx, &transportpb.Message{Module: "b", To: "n.in", Data: data})
				return err
			})
		})
		b.Run(fmt.Sprintf("tinymod/c=%d", conc), func(b *testing.B) {
			addr := serve(b, func(g *grpc.Server) { NewServer(answer{}, "t").Register(g) })
			client := NewClient(fixedResolver(addr), "t")
			defer client.Close()
			run(b, conc, func() error {
				if err, ok := client.Send(context.Background(), "b", scheduler.Msg{To: "n.in", From: "a.out", Data: payload}).(error); ok {
					return err
				}
				return nil
			})
		})
	}
}

// run calls op b.N times from conc goroutines and reports latency percentiles.
func run(b *testing.B, conc int, op func() error) {
	b.ReportAllocs()
	cpu0 := cpuTime()
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	per := b.N / conc
	b.ResetTimer()
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := per
			if g == 0 {
				n += b.N % conc
			}
			for range n {
				start := time.Now()
				if err := op(); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(start))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	// Sender and receiver share this process: this is the CPU both sides spend.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1000, "cpu-µs/msg")
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
