// Package transport carries messages between modules over gRPC. Every replica
// serves the Module service; a sender spreads business messages over all the
// target module's replicas and sends system-port messages to its leader.
// Results, errors with their class (transient or permanent), deadlines,
// cancellation, message depth and IDs cross the wire.
//
// Messages travel over one long-lived Stream per pair of replicas. Messages
// and answers that wait to be written while another is written share its
// frame (a batch) when the peer said it reads batches, so under load many
// of them cost one gRPC message; a message alone is written at once. A
// replica
// that stops drains its streams (Server.Drain): the senders move the messages
// they have not sent yet to other replicas, and get the answers of those in
// flight. Connections to replicas that have gone, or that no message has
// used for a while, are closed; keepalive pings notice a peer that vanished
// without closing its connection.
package transport

import (
	"context"
	"crypto/subtle"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MaxMessageSize bounds one message on the wire, both ways.
const MaxMessageSize = 4 << 20

// HTTP/2 flow-control windows, fixed: with them set, gRPC does not estimate
// the bandwidth-delay product, whose PING, sent about once a round trip
// while data flows, costs each side a write and a read.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// MinKeepaliveTime is the shortest interval at which a client may ping a
// replica (gRPC's own floor); servers accept pings twice as often, so timer
// jitter never makes them refuse a client's.
const MinKeepaliveTime = 10 * time.Second

// Keepalive on the server: a client connection silent for serverKeepaliveTime
// is pinged, and closed when the ping is not answered within
// serverKeepaliveTimeout, which ends its streams and cancels their messages.
const (
	serverKeepaliveTime    = 30 * time.Second
	serverKeepaliveTimeout = 10 * time.Second
)

const tokenKey = "authorization"

// Resolver says where a module's replicas are. It answers within ctx.
type Resolver interface {
	// Replicas returns the addresses of the module's live replicas.
	Replicas(ctx context.Context, module string) []string
	// Leader returns the address of the module's leader.
	Leader(ctx context.Context, module string) (string, bool)
}

// ServerOptions are the options the server needs: size limits, keepalive,
// and the token check if token is not empty.
func ServerOptions(token string) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: serverKeepaliveTime, Timeout: serverKeepaliveTimeout}),
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: MinKeepaliveTime / 2, PermitWithoutStream: true}),
	}
	if token != "" {
		check := func(ctx context.Context, method string) error {
			if !strings.HasPrefix(method, "/tinymod.") {
				return nil // health checks stay open
			}
			md, _ := metadata.FromIncomingContext(ctx)
			got := ""
			if v := md.Get(tokenKey); len(v) > 0 {
				got = strings.TrimPrefix(v[0], "Bearer ")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				return status.Error(codes.Unauthenticated, "tinymod: missing or wrong token")
			}
			return nil
		}
		opts = append(opts,
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
				if err := check(ctx, info.FullMethod); err != nil {
					return nil, err
				}
				return next(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
				if err := check(ss.Context(), info.FullMethod); err != nil {
					return err
				}
				return next(srv, ss)
			}))
	}
	return opts
}

func tokenContext(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, tokenKey, "Bearer "+token)
}
