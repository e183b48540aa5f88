package transport

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tinymod/tinymod/internal/transport/transportpb"
)

// FuzzRequestDecode feeds arbitrary bytes as a request off the wire: decoded
// and answered, or refused, never a panic.
func FuzzRequestDecode(f *testing.F) {
	good, _ := proto.Marshal(&transportpb.Message{Module: "b", To: "n.in", Data: []byte(`{"a":1}`), Depth: 3, Id: "x"})
	f.Add(good)
	bad, _ := proto.Marshal(&transportpb.Message{Module: "b", To: "nodot", Data: []byte(`{`)})
	f.Add(bad)
	f.Add([]byte{0xff, 0x01})
	s := NewServer(answer{}, "")
	f.Fuzz(func(t *testing.T, wire []byte) {
		m := &transportpb.Message{}
		if proto.Unmarshal(wire, m) != nil {
			return
		}
		_, _ = s.Send(context.Background(), m)
	})
}
