package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tinymod/tinymod/internal/transport/transportpb"
)

// The baseline is what a user would write instead: a plain unary grpc-go
// service per receiving process that decodes the same JSON message, called
// by paced senders that spread over the receivers round-robin, one shared
// ClientConn per receiver.

// plainServer decodes the message, as the counting sink's port does.
type plainServer struct {
	transportpb.UnimplementedModuleServer
	received atomic.Int64
}

func (s *plainServer) Send(_ context.Context, m *transportpb.Message) (*transportpb.Result, error) {
	var msg Message
	if err := json.Unmarshal(m.Data, &msg); err != nil {
		return nil, err
	}
	s.received.Add(1)
	return &transportpb.Result{}, nil
}

// baselineServe serves until SIGTERM, then prints how many it received.
func baselineServe(args []string) error {
	f := flag.NewFlagSet("baseline-serve", flag.ExitOnError)
	listen := f.String("listen", "127.0.0.1:0", "address")
	pprofAddr := f.String("pprof", "", "serve net/http/pprof on this address")
	_ = f.Parse(args)
	if err := servePprof(*pprofAddr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &plainServer{}
	g := grpc.NewServer()
	transportpb.RegisterModuleServer(g, srv)
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
		<-stop
		g.GracefulStop()
	}()
	err = g.Serve(ln)
	fmt.Printf(`{"msg":"received","received":%d}`+"\n", srv.received.Load())
	return err
}

// sendOptions are a sending process's flags.
type sendOptions struct {
	Settings
	pprof string
}

// sendFlags defines the flags every sending process takes.
func sendFlags(f *flag.FlagSet) *sendOptions {
	s := &sendOptions{}
	f.IntVar(&s.Rate, "rate", 5000, "messages a second")
	f.IntVar(&s.Seconds, "seconds", 60, "how long")
	f.Int64Var(&s.StartAt, "start-at", 0, "Unix milliseconds to start at")
	f.IntVar(&s.Workers, "workers", 0, "concurrent senders (0: the pacer's default)")
	f.StringVar(&s.pprof, "pprof", "", "serve net/http/pprof on this address")
	return s
}

// baselineSend sends at the rate from start-at, then prints its result line.
func baselineSend(args []string) error {
	f := flag.NewFlagSet("baseline-send", flag.ExitOnError)
	targets := f.String("targets", "", "comma-separated receiver addresses")
	s := sendFlags(f)
	_ = f.Parse(args)
	if err := servePprof(s.pprof); err != nil {
		return err
	}
	var clients []transportpb.ModuleClient
	for _, addr := range strings.Split(*targets, ",") {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients = append(clients, transportpb.NewModuleClient(conn))
	}
	time.Sleep(time.Until(time.UnixMilli(s.StartAt)))
	ctx := context.Background()
	r := pace(ctx, s.Settings, func(seq int64) error {
		data, _ := json.Marshal(Message{Seq: seq})
		_, err := clients[seq%int64(len(clients))].Send(ctx, &transportpb.Message{Module: "load-sink", To: "sink.in", Data: data})
		return err
	})
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
	return nil
}
