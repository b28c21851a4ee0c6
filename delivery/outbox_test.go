package delivery

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/paybridge/caddy-paybridge/payment"
)

// fakeOutbox is an in-memory payment.Outbox that also remembers what the
// worker did to it.
type fakeOutbox struct {
	mu          sync.Mutex
	seq         uint64
	msgs        []payment.Message // in Seq order
	delivered   []payment.Message
	dead        []payment.Message
	rescheduled []payment.Message
	enq         chan struct{}
}

func newFakeOutbox() *fakeOutbox { return &fakeOutbox{enq: make(chan struct{}, 1)} }

// add enqueues m and signals, as a committing store would.
func (o *fakeOutbox) add(m payment.Message) payment.Message {
	m = o.addQuiet(m)
	select {
	case o.enq <- struct{}{}:
	default:
	}
	return m
}

// addQuiet enqueues m without signalling, as another process would.
func (o *fakeOutbox) addQuiet(m payment.Message) payment.Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	m.Seq = o.seq
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now()
	}
	o.msgs = append(o.msgs, m)
	return m
}

func (o *fakeOutbox) Heads(limit int) ([]payment.Message, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := make(map[string]bool)
	var out []payment.Message
	for _, m := range o.msgs {
		if len(out) >= limit {
			break
		}
		if q := m.Queue(); !seen[q] {
			seen[q] = true
			out = append(out, m)
		}
	}
	return out, nil
}

func (o *fakeOutbox) find(seq uint64) (int, error) {
	for i, m := range o.msgs {
		if m.Seq == seq {
			return i, nil
		}
	}
	return -1, fmt.Errorf("message %d not in outbox", seq)
}

func (o *fakeOutbox) Delivered(m payment.Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	i, err := o.find(m.Seq)
	if err != nil {
		return err
	}
	o.msgs = append(o.msgs[:i], o.msgs[i+1:]...)
	o.delivered = append(o.delivered, m)
	return nil
}

func (o *fakeOutbox) Reschedule(m payment.Message, seen time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	i, err := o.find(m.Seq)
	if err != nil {
		return err
	}
	o.msgs[i].Attempts = m.Attempts
	if !o.msgs[i].NextAttempt.IsZero() || seen.IsZero() {
		o.msgs[i].NextAttempt = m.NextAttempt
	}
	o.msgs[i].LastError = m.LastError
	o.rescheduled = append(o.rescheduled, m)
	return nil
}

func (o *fakeOutbox) Kill(m payment.Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	i, err := o.find(m.Seq)
	if err != nil {
		return err
	}
	o.msgs = append(o.msgs[:i], o.msgs[i+1:]...)
	m.Dead = true
	o.dead = append(o.dead, m)
	return nil
}

func (o *fakeOutbox) Enqueued() <-chan struct{} { return o.enq }

// snapshot copies the outbox's state for assertions.
func (o *fakeOutbox) snapshot() (live, delivered, dead, rescheduled []payment.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]payment.Message(nil), o.msgs...),
		append([]payment.Message(nil), o.delivered...),
		append([]payment.Message(nil), o.dead...),
		append([]payment.Message(nil), o.rescheduled...)
}

func (o *fakeOutbox) deliveredCount() int {
	_, d, _, _ := o.snapshot()
	return len(d)
}

// testWorker returns a worker with test-sized durations.
func testWorker(t *testing.T, o *fakeOutbox, r Resolver) *Worker {
	return &Worker{
		Outbox:     o,
		Resolve:    r,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Poll:       20 * time.Millisecond,
		Logger:     zaptest.NewLogger(t),
	}
}

// start runs w until the test ends, then checks that Run returns promptly.
func start(t *testing.T, w *Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func static(url string) Resolver {
	return func(payment.Message) (Destination, bool) { return Destination{URL: url}, true }
}

func msg(paymentID, body string) payment.Message {
	return payment.Message{Kind: "test", Target: "hook", PaymentID: paymentID, Body: []byte(body)}
}

// server starts a loopback listener closed when the test ends.
func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// hold keeps a request hanging until release is closed or the client goes
// away. The body is read first because the server notices a closed
// connection only once it has consumed the request body.
func hold(r *http.Request, release <-chan struct{}) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-release:
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
	}
}
