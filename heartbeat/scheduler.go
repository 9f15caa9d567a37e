package heartbeat

import (
	"container/heap"
	"runtime"
	"sync"
	"time"
)

// nanotime returns monotonic nanoseconds since the scheduler's epoch.
func (s *scheduler) nanotime() int64 { return int64(time.Since(s.epoch)) }

// timeAt converts a nanotime reading to wall-clock time.
func (s *scheduler) timeAt(ns int64) time.Time { return s.epoch.Add(time.Duration(ns)) }

// scheduler holds the heartbeat deadlines of every Conn of the process in one min-heap served
// by one goroutine and one time.Timer. The goroutine runs only while connections exist. A small
// fixed pool of writer goroutines sends PINGs and PONGs so that a socket with a full send
// buffer never stalls the clock.
type scheduler struct {
	// epoch is the origin of the scheduler's monotonic clock; it is set once and never changes.
	epoch time.Time

	mu      sync.Mutex
	h       connHeap // min-heap on Conn.when
	running bool
	wake    chan struct{}

	startWriters sync.Once
	jobs         chan *Conn

	bufs sync.Pool // *[]byte of HeaderSize+MaxPayload bytes
}

// shared is the process-wide scheduler: the design requires exactly one timing structure per
// process. The pointer never changes; its state is guarded by its mutex.
var shared = newScheduler()

// newScheduler returns a scheduler whose clock starts now. Besides the shared one, only tests
// make their own (Options.sched), e.g. inside a synctest bubble whose clock is virtual.
func newScheduler() *scheduler {
	s := &scheduler{epoch: time.Now(), wake: make(chan struct{}, 1), jobs: make(chan *Conn, 4096)}
	s.bufs.New = func() any {
		b := make([]byte, HeaderSize+MaxPayload)
		return &b
	}
	return s
}

// connHeap is a min-heap of connections on Conn.when for container/heap; each Conn keeps its
// index so that it can be removed or moved without a search.
type connHeap []*Conn

func (h connHeap) Len() int           { return len(h) }
func (h connHeap) Less(i, j int) bool { return h[i].when < h[j].when }
func (h connHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = int32(i)
	h[j].idx = int32(j)
}

// Push and Pop are for container/heap only.
func (h *connHeap) Push(x any) {
	c := x.(*Conn)
	c.idx = int32(len(*h))
	*h = append(*h, c)
}

func (h *connHeap) Pop() any {
	old := *h
	n := len(old) - 1
	c := old[n]
	old[n] = nil
	*h = old[:n]
	c.idx = -1
	return c
}

func (s *scheduler) push(c *Conn) { heap.Push(&s.h, c) }

func (s *scheduler) removeAt(i int) *Conn { return heap.Remove(&s.h, i).(*Conn) }

// add schedules c's first visit at when.
func (s *scheduler) add(c *Conn, when int64) {
	s.startWriters.Do(func() {
		n := runtime.GOMAXPROCS(0)
		if n < 2 {
			n = 2
		}
		if n > 8 {
			n = 8
		}
		for range n {
			go s.writer()
		}
	})
	s.mu.Lock()
	c.when = when
	s.push(c)
	top := c.idx == 0
	if !s.running {
		s.running = true
		go s.loop()
	}
	s.mu.Unlock()
	if top {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// remove takes c out of the schedule for good.
func (s *scheduler) remove(c *Conn) {
	s.mu.Lock()
	c.removed = true
	if c.idx >= 0 {
		s.removeAt(int(c.idx))
	}
	s.mu.Unlock()
}

// advance moves c's deadline earlier to when (a PONG arrived: the next PING is due Time
// after it, before the pending Timeout check).
func (s *scheduler) advance(c *Conn, when int64) {
	s.mu.Lock()
	if c.idx >= 0 && !c.removed && when < c.when {
		c.when = when
		heap.Fix(&s.h, int(c.idx))
		if c.idx == 0 {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
	s.mu.Unlock()
}

// size returns the number of scheduled connections.
func (s *scheduler) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.h)
}

const maxBatch = 1024

// loop is the one goroutine that fires every connection's deadlines.
func (s *scheduler) loop() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	batch := make([]*Conn, 0, 64)
	for {
		s.mu.Lock()
		if len(s.h) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		now := s.nanotime()
		for len(s.h) > 0 && s.h[0].when <= now && len(batch) < maxBatch {
			batch = append(batch, s.removeAt(0))
		}
		var wait int64
		if len(batch) == 0 {
			wait = s.h[0].when - now
		}
		s.mu.Unlock()

		if len(batch) == 0 {
			t.Reset(time.Duration(wait))
			select {
			case <-t.C:
			case <-s.wake:
			}
			continue
		}
		for _, c := range batch {
			c.when = c.visit(now) // c is out of the heap: when is free to hold the result
		}
		s.mu.Lock()
		for _, c := range batch {
			if c.when >= 0 && !c.removed {
				// A PONG that arrived during the visit could not advance c (it was out of
				// the heap): apply it now.
				if lr := c.lastRead.Load(); c.pingOut && lr > c.pingAt {
					c.when = min(c.when, lr+c.timeD)
				}
				s.push(c)
			}
		}
		s.mu.Unlock()
		clear(batch)
		batch = batch[:0]
	}
}

// kick asks a writer to flush c's pending control frames. It never blocks: when every writer
// is busy (sockets with full send buffers) and the queue is full, a goroutine is started.
func (s *scheduler) kick(c *Conn) {
	select {
	case s.jobs <- c:
	default:
		go c.tryFlush()
	}
}

// stopWriters ends the writer goroutines of a scheduler no Conn uses any more (a test's own;
// never the shared one).
func (s *scheduler) stopWriters() {
	s.startWriters.Do(func() {})
	close(s.jobs)
}

func (s *scheduler) writer() {
	for c := range s.jobs {
		c.tryFlush()
	}
}
