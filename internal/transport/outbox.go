package transport

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/metadata"

	"github.com/tinymod/tinymod/internal/transport/transportpb"
)

// batchKey is the request metadata with which a client says it reads
// batched envelopes, and the response header with which a server says so.
const batchKey = "tinymod-batch"

// Bounds of one batch: envelopes waiting beyond them go in the next frame,
// and an envelope bigger than maxBatchBytes goes alone.
const (
	maxBatchLen   = 128
	maxBatchBytes = 64 << 10
	// maxFlushes is how many frames a sender writes for others before it
	// hands what is still waiting to a goroutine of its own, so that under
	// steady load no one sender waits on everybody else's messages.
	maxFlushes = 4
)

// readsBatches says whether md, a peer's request metadata or response
// header, says that it reads batches.
func readsBatches(md metadata.MD) bool { return len(md.Get(batchKey)) > 0 }

// withBatches adds to ctx the request metadata saying that this side reads batches.
func withBatches(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, batchKey, "1")
}

// each calls fn with env, or with each envelope of its batch.
func each(env *transportpb.Envelope, fn func(*transportpb.Envelope)) {
	if batch := env.GetBatch(); len(batch) > 0 {
		for _, env := range batch {
			fn(env)
		}
		return
	}
	fn(env)
}

// outbox writes envelopes to one stream. A sender that finds nobody writing
// writes what is waiting, its own envelope first, then whatever others put
// meanwhile, several to a frame if the peer reads batches: under load many
// messages share one gRPC message, one HTTP/2 frame and one wake-up of each
// side's writer, while a message alone goes at once and no goroutine waits
// for work.
type outbox struct {
	write  func(*transportpb.Envelope) error // the stream's Send; one caller at a time
	failed func([]*transportpb.Envelope, error)
	// prepare, if set, is given each frame's envelopes just before they
	// are written, and returns those to write.
	prepare func([]*transportpb.Envelope) []*transportpb.Envelope
	batch   atomic.Bool // the peer reads batches
	sent    *flow       // counts the frames written, if not nil

	writeMu sync.Mutex // held around write and close
	closed  bool       // under writeMu: nothing more is written

	mu      sync.Mutex
	idle    *sync.Cond // on mu: nobody writes and nothing waits
	queue   []*transportpb.Envelope
	spare   []*transportpb.Envelope // a written queue's array, for reuse
	writing bool
}

// newOutbox returns an outbox writing with write; failed, if not nil, is
// told of the envelopes a write could not send.
func newOutbox(write func(*transportpb.Envelope) error, failed func([]*transportpb.Envelope, error)) *outbox {
	o := &outbox{write: write, failed: failed}
	o.idle = sync.NewCond(&o.mu)
	return o
}

// put sends env, now if nobody is writing, or in the writer's next frame.
func (o *outbox) put(env *transportpb.Envelope) {
	o.mu.Lock()
	o.queue = append(o.queue, env)
	if o.writing {
		o.mu.Unlock()
		return
	}
	o.writing = true
	o.mu.Unlock()
	// Let senders that are ready to run put theirs first: on a busy
	// replica they join this frame instead of each writing one.
	runtime.Gosched()
	o.flush(maxFlushes)
}

// flush writes what waits, up to rounds frames, and hands the rest, if
// any, to a new goroutine.
func (o *outbox) flush(rounds int) {
	for range rounds {
		o.mu.Lock()
		envs, whole := o.take()
		if len(envs) == 0 {
			o.writing = false
			o.idle.Broadcast()
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()

		o.send(envs)
		clear(envs)
		if whole {
			o.mu.Lock()
			o.spare = envs[:0]
			o.mu.Unlock()
		}
	}
	go o.flush(maxFlushes)
}

// send writes envs, in one frame if the peer reads batches, and tells
// failed of those it could not write, before anyone else may write or
// close.
func (o *outbox) send(envs []*transportpb.Envelope) {
	o.writeMu.Lock()
	defer o.writeMu.Unlock()
	if unsent, err := o.sendLocked(envs); err != nil && o.failed != nil {
		o.failed(unsent, err)
	}
}

func (o *outbox) sendLocked(envs []*transportpb.Envelope) ([]*transportpb.Envelope, error) {
	if o.closed {
		return envs, errOutboxClosed
	}
	if o.prepare != nil {
		envs = o.prepare(envs)
	}
	if len(envs) > 1 && o.batch.Load() {
		// The stream has encoded the frame when write returns, so envs
		// can be used again.
		if err := o.write(&transportpb.Envelope{Batch: envs}); err != nil {
			return envs, err
		}
		o.sent.count(len(envs))
		return nil, nil
	}
	for i, env := range envs {
		if err := o.write(env); err != nil {
			return envs[i:], err
		}
		o.sent.count(1)
	}
	return nil, nil
}

// take removes from the queue what the next frame carries, and says
// whether that is the whole queue (whose array is then the caller's); under mu.
func (o *outbox) take() (envs []*transportpb.Envelope, whole bool) {
	n, size := 0, 0
	for n < len(o.queue) && n < maxBatchLen {
		size += envelopeSize(o.queue[n])
		if n > 0 && size > maxBatchBytes {
			break
		}
		n++
	}
	if n == len(o.queue) {
		envs, o.queue, o.spare = o.queue, o.spare, nil
		return envs, true
	}
	envs, o.queue = o.queue[:n:n], o.queue[n:]
	return envs, false
}

// errOutboxClosed is the error of envelopes put after close.
var errOutboxClosed = errors.New("the stream takes no more messages")

// close writes nothing more, once the frame being written, if any, is
// written; then it runs fn, if not nil, which may end the stream's sending
// side. Envelopes put later are failed.
func (o *outbox) close(fn func()) {
	o.writeMu.Lock()
	defer o.writeMu.Unlock()
	if o.closed {
		return
	}
	o.closed = true
	if fn != nil {
		fn()
	}
}

// wait returns once nothing waits to be written and nobody writes.
func (o *outbox) wait() {
	o.mu.Lock()
	for o.writing || len(o.queue) > 0 {
		o.idle.Wait()
	}
	o.mu.Unlock()
}

// envelopeSize is about how many bytes env takes on the wire, never much
// less: enough to keep a batch well below MaxMessageSize.
func envelopeSize(env *transportpb.Envelope) int {
	n := 32 + len(env.GetStatus())
	if m := env.GetMessage(); m != nil {
		n += 32 + len(m.GetModule()) + len(m.GetTo()) + len(m.GetFrom()) + len(m.GetData()) + len(m.GetId())
		for k, v := range m.GetTrace() {
			n += 8 + len(k) + len(v)
		}
	}
	if r := env.GetResult(); r != nil {
		n += 16 + len(r.GetData()) + len(r.GetError().GetMessage())
	}
	return n
}
