package transport

import "time"

// workerIdle is how long a handler goroutine waits for the next message
// before it exits.
const workerIdle = 5 * time.Second

// workers runs each message's handler on a goroutine of its own, reusing
// goroutines that have finished one: a new goroutine starts with a small
// stack and grows it, copying, on every message, which cost more than the
// rest of the receiving side put together.
type workers struct {
	jobs chan func() // unbuffered: a send succeeds only when a worker waits
}

func newWorkers() *workers { return &workers{jobs: make(chan func())} }

// run runs job on an idle worker, or on a new one if none is idle.
func (w *workers) run(job func()) {
	select {
	case w.jobs <- job:
	default:
		go w.work(job)
	}
}

func (w *workers) work(job func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		job()
		idle.Reset(workerIdle)
		select {
		case job = <-w.jobs:
		case <-idle.C:
			return
		}
	}
}
