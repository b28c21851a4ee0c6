package delivery

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

func TestOrderPerQueueUnderFailures(t *testing.T) {
	var mu sync.Mutex
	var arrivals []string
	failures := 0
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		arrivals = append(arrivals, string(b))
		if string(b) == "m1" && failures < 2 {
			failures++
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	o := newFakeOutbox()
	w := testWorker(t, o, static(srv.URL))
	w.Concurrency = 8
	start(t, w)
	o.add(msg("A", "m1"))
	o.add(msg("A", "m2"))
	o.add(msg("A", "m3"))

	waitFor(t, 2*time.Second, "delivery", func() bool { return o.deliveredCount() == 3 })
	mu.Lock()
	defer mu.Unlock()
	want := []string{"m1", "m1", "m1", "m2", "m3"}
	if len(arrivals) != len(want) {
		t.Fatalf("arrivals = %v, want %v", arrivals, want)
	}
	for i := range want {
		if arrivals[i] != want[i] {
			t.Fatalf("arrivals = %v, want %v", arrivals, want)
		}
	}
}

func TestOtherQueuesNotBlocked(t *testing.T) {
	release := make(chan struct{})
	var hanging atomic.Int32
	hang := server(t, func(w http.ResponseWriter, r *http.Request) {
		hanging.Add(1)
		hold(r, release)
	})
	fail := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	ok := server(t, func(w http.ResponseWriter, r *http.Request) {})
	t.Cleanup(func() { close(release) }) // before the servers close

	urls := map[string]string{"hang": hang.URL, "fail": fail.URL, "ok": ok.URL}
	o := newFakeOutbox()
	w := testWorker(t, o, func(m payment.Message) (Destination, bool) {
		return Destination{URL: urls[m.Target]}, true
	})
	w.Concurrency = 4
	stop := start(t, w)

	o.add(payment.Message{Kind: "test", Target: "hang", PaymentID: "slow"})
	o.add(payment.Message{Kind: "test", Target: "fail", PaymentID: "poison"})
	for _, p := range []string{"p1", "p2", "p3", "p1", "p4", "p5", "p2"} {
		o.add(payment.Message{Kind: "test", Target: "ok", PaymentID: p})
	}

	waitFor(t, 2*time.Second, "healthy queues delivered", func() bool { return o.deliveredCount() == 7 })
	waitFor(t, 2*time.Second, "failing queue retried", func() bool {
		live, _, _, _ := o.snapshot()
		for _, m := range live {
			if m.Target == "fail" {
				return m.Attempts >= 2
			}
		}
		return false
	})
	if hanging.Load() != 1 {
		t.Errorf("hanging listener got %d requests, want 1 still in flight", hanging.Load())
	}
	stop()
	live, _, _, _ := o.snapshot()
	if len(live) != 2 {
		t.Fatalf("%d left in outbox, want the hanging and the failing one", len(live))
	}
	for _, m := range live {
		if m.Target == "hang" && m.Attempts != 0 {
			t.Errorf("send aborted by shutdown was counted: Attempts=%d", m.Attempts)
		}
		if m.Target == "fail" && m.Attempts < 2 {
			t.Errorf("failing queue retried only %d times", m.Attempts)
		}
	}
}

func TestConcurrencyBound(t *testing.T) {
	release := make(chan struct{})
	var cur, peak atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		hold(r, release)
	})
	t.Cleanup(func() { close(release) })
	o := newFakeOutbox()
	w := testWorker(t, o, static(srv.URL))
	w.Concurrency = 2
	start(t, w)
	for _, p := range []string{"a", "b", "c", "d", "e"} {
		o.add(msg(p, "{}"))
	}
	waitFor(t, time.Second, "two sends in flight", func() bool { return cur.Load() == 2 })
	time.Sleep(100 * time.Millisecond)
	if peak.Load() != 2 {
		t.Errorf("peak concurrency %d, want 2", peak.Load())
	}
}

func TestMaxAgeDeadLettersAndQueueMoves(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if b, _ := io.ReadAll(r.Body); string(b) == "poison" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})

	t.Run("aging", func(t *testing.T) {
		o := newFakeOutbox()
		w := testWorker(t, o, static(srv.URL))
		w.MaxAge = 150 * time.Millisecond
		var deaths atomic.Int32
		w.OnResult = func(m payment.Message, delivered, dead bool) {
			if dead {
				deaths.Add(1)
			}
		}
		start(t, w)
		first := o.add(msg("A", "poison"))
		o.add(msg("A", "next"))

		waitFor(t, 2*time.Second, "next delivered", func() bool { return o.deliveredCount() == 1 })
		_, delivered, dead, _ := o.snapshot()
		if len(dead) != 1 || dead[0].Seq != first.Seq {
			t.Fatalf("dead = %+v", dead)
		}
		d := dead[0]
		if d.Attempts < 2 || d.LastError != "HTTP 500" || !d.Dead {
			t.Errorf("dead letter Attempts=%d LastError=%q Dead=%v", d.Attempts, d.LastError, d.Dead)
		}
		if string(delivered[0].Body) != "next" {
			t.Errorf("delivered %q", delivered[0].Body)
		}
		if deaths.Load() != 1 {
			t.Errorf("OnResult(dead) called %d times", deaths.Load())
		}
	})

	t.Run("already old", func(t *testing.T) {
		o := newFakeOutbox()
		start(t, testWorker(t, o, static(srv.URL)))
		old := msg("A", "poison")
		old.CreatedAt = time.Now().Add(-100 * time.Hour)
		o.add(old)
		o.add(msg("A", "next"))

		waitFor(t, 2*time.Second, "next delivered", func() bool { return o.deliveredCount() == 1 })
		_, _, dead, _ := o.snapshot()
		if len(dead) != 1 || dead[0].Attempts != 1 {
			t.Fatalf("dead = %+v, want one after its single last chance", dead)
		}
	})
}
