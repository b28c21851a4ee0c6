package delivery

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
)

// finished reports the end of one attempt to the loop. hold, when set,
// keeps the queue back until then even if the store still shows the message
// as due: it is set when recording the outcome failed, so a broken store
// does not turn into a tight resend loop.
type finished struct {
	queue string
	hold  time.Time
}

// Run delivers until ctx is done, then waits for in-flight sends. Those are
// cancelled with ctx rather than awaited for their full timeout, so a
// shutdown or reload is prompt; a cancelled attempt is not recorded, and the
// message is sent again by the next Run (at least once).
func (w *Worker) Run(ctx context.Context) {
	s := w.settings()
	var wg sync.WaitGroup
	defer wg.Wait()

	inflight := make(map[string]bool)
	holds := make(map[string]time.Time)
	// Buffered to Concurrency so senders never block on a loop that has
	// already returned.
	done := make(chan finished, s.concurrency)
	enqueued := s.outbox.Enqueued()
	kick := w.kickCh()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	settle := func(f finished) {
		delete(inflight, f.queue)
		if !f.hold.IsZero() {
			holds[f.queue] = f.hold
		}
	}

	for {
		wait := s.scan(ctx, &wg, inflight, holds, done)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-enqueued:
		case <-kick:
		case <-timer.C:
		case f := <-done:
			// Rescan at once so the queue's next message follows its head
			// without waiting for a poll, but collapse a burst of finishes
			// into one scan.
			settle(f)
			for more := true; more; {
				select {
				case f := <-done:
					settle(f)
				default:
					more = false
				}
			}
		}
	}
}

// scan starts a send for every due head whose queue is idle, within the
// concurrency bound, and returns how long to sleep until the next head is
// due (at most Poll).
func (s *settings) scan(ctx context.Context, wg *sync.WaitGroup, inflight map[string]bool, holds map[string]time.Time, done chan<- finished) time.Duration {
	wait := s.poll
	heads, err := s.outbox.Heads(headsLimit)
	if err != nil {
		s.log.Error("delivery: listing outbox", zap.Error(err))
		return wait
	}
	now := s.now()
	for q, t := range holds {
		if !t.After(now) {
			delete(holds, q)
		}
	}
	// Fair share: a destination with nothing in flight goes before one
	// that already holds slots, so one slow listener with many payments
	// cannot take every slot from the others.
	busy := make(map[string]bool)
	for q := range inflight {
		busy[dest(q)] = true
	}
	var later []payment.Message
	start := func(m payment.Message) {
		q := m.Queue()
		inflight[q] = true
		busy[dest(q)] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			done <- finished{queue: q, hold: s.attempt(ctx, m)}
		}()
	}
	for _, m := range heads {
		q := m.Queue()
		if inflight[q] {
			continue
		}
		due := m.NextAttempt
		if h, ok := holds[q]; ok && h.After(due) {
			due = h
		}
		if due.After(now) {
			wait = min(wait, due.Sub(now))
			continue
		}
		if busy[dest(q)] {
			later = append(later, m)
			continue
		}
		if len(inflight) >= s.concurrency {
			// A finishing send wakes the loop; no need to poll for it.
			continue
		}
		start(m)
	}
	for _, m := range later {
		if len(inflight) >= s.concurrency {
			break
		}
		start(m)
	}
	return wait
}

// dest is the Kind and Target of queue q (Kind\x00Target\x00PaymentID).
func dest(q string) string {
	if i := strings.LastIndexByte(q, 0); i >= 0 {
		return q[:i]
	}
	return q
}
