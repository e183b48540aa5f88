package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The second anchor is NATS request-reply, which a user might pick instead
// of gRPC between services: one NATS server (embedded from the nats-server
// module, in a process of its own, as it would be a pod of its own), the
// receiving processes in one queue group on the node's subject, each
// decoding the same JSON message and replying, and paced senders calling
// nats.Conn.Request on one connection each.

const natsSubject, natsQueue = "load-sink.sink.in", "load-sink"

// natsServe runs the NATS server until SIGTERM.
func natsServe(args []string) error {
	f := flag.NewFlagSet("nats-server", flag.ExitOnError)
	listen := f.String("listen", "127.0.0.1:4222", "address")
	pprofAddr := f.String("pprof", "", "serve net/http/pprof on this address")
	_ = f.Parse(args)
	if err := servePprof(*pprofAddr); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	s, err := server.NewServer(&server.Options{Host: host, Port: p, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("the NATS server did not start on %s", *listen)
	}
	fmt.Println(`{"msg":"nats server ready"}`)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
	s.Shutdown()
	return nil
}

// natsReceive answers requests in the queue group until SIGTERM, then
// prints how many it received.
func natsReceive(args []string) error {
	f := flag.NewFlagSet("nats-receive", flag.ExitOnError)
	url := f.String("url", nats.DefaultURL, "NATS server")
	pprofAddr := f.String("pprof", "", "serve net/http/pprof on this address")
	_ = f.Parse(args)
	if err := servePprof(*pprofAddr); err != nil {
		return err
	}
	nc, err := nats.Connect(*url)
	if err != nil {
		return err
	}
	defer nc.Close()
	var received atomic.Int64
	_, err = nc.QueueSubscribe(natsSubject, natsQueue, func(m *nats.Msg) {
		var msg Message
		if err := json.Unmarshal(m.Data, &msg); err != nil {
			_ = m.Respond([]byte(err.Error()))
			return
		}
		received.Add(1)
		_ = m.Respond(nil)
	})
	if err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	fmt.Println(`{"msg":"subscribed"}`)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
	_ = nc.Drain()
	fmt.Printf(`{"msg":"received","received":%d}`+"\n", received.Load())
	return nil
}

// natsSend sends requests at the rate from start-at, then prints its result line.
func natsSend(args []string) error {
	f := flag.NewFlagSet("nats-send", flag.ExitOnError)
	url := f.String("url", nats.DefaultURL, "NATS server")
	s := sendFlags(f)
	_ = f.Parse(args)
	if err := servePprof(s.pprof); err != nil {
		return err
	}
	nc, err := nats.Connect(*url)
	if err != nil {
		return err
	}
	defer nc.Close()
	time.Sleep(time.Until(time.UnixMilli(s.StartAt)))
	r := pace(context.Background(), s.Settings, func(seq int64) error {
		data, _ := json.Marshal(Message{Seq: seq})
		reply, err := nc.Request(natsSubject, data, 10*time.Second)
		if err != nil {
			return err
		}
		if len(reply.Data) > 0 {
			return fmt.Errorf("refused: %s", reply.Data)
		}
		return nil
	})
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
	return nil
}
