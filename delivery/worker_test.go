package delivery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

func TestDeliveredOn2xx(t *testing.T) {
	var mu sync.Mutex
	var method, ctype, body string
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		method, ctype, body = r.Method, r.Header.Get("Content-Type"), string(b)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	o := newFakeOutbox()
	w := testWorker(t, o, static(srv.URL))
	var results atomic.Int32
	w.OnResult = func(m payment.Message, delivered, dead bool) {
		if delivered && !dead {
			results.Add(1)
		}
	}
	start(t, w)
	o.add(msg("p1", `{"a":1}`))

	waitFor(t, 2*time.Second, "delivery", func() bool { return o.deliveredCount() == 1 })
	live, delivered, _, _ := o.snapshot()
	if len(live) != 0 {
		t.Errorf("outbox still holds %d messages", len(live))
	}
	if delivered[0].Attempts != 0 {
		t.Errorf("Attempts = %d, want 0", delivered[0].Attempts)
	}
	mu.Lock()
	defer mu.Unlock()
	if method != http.MethodPost || ctype != "application/json" || body != `{"a":1}` {
		t.Errorf("got %s %q %q", method, ctype, body)
	}
	if results.Load() != 1 {
		t.Errorf("OnResult(delivered) called %d times", results.Load())
	}
}

func TestRetriedOn500ThenDelivered(t *testing.T) {
	var calls atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "down", http.StatusInternalServerError)
		}
	})
	o := newFakeOutbox()
	start(t, testWorker(t, o, static(srv.URL)))
	o.add(msg("p1", "{}"))

	waitFor(t, 2*time.Second, "delivery", func() bool { return o.deliveredCount() == 1 })
	_, delivered, _, resched := o.snapshot()
	if got := delivered[0]; got.Attempts != 2 || got.LastError != "HTTP 500" {
		t.Errorf("delivered with Attempts=%d LastError=%q, want 2, HTTP 500", got.Attempts, got.LastError)
	}
	if len(resched) != 2 || resched[0].Attempts != 1 || resched[1].Attempts != 2 {
		t.Fatalf("rescheduled = %+v", resched)
	}
	for _, m := range resched {
		if m.NextAttempt.IsZero() {
			t.Error("rescheduled without NextAttempt")
		}
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		first := len(times) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	o := newFakeOutbox()
	// MaxBackoff is far below Retry-After: the listener's word wins.
	start(t, testWorker(t, o, static(srv.URL)))
	o.add(msg("p1", "{}"))

	waitFor(t, 3*time.Second, "delivery", func() bool { return o.deliveredCount() == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("%d requests, want 2", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Errorf("retried after %v, want >= 1s", gap)
	}
}

func TestTimeoutIsFailure(t *testing.T) {
	var calls atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			hold(r, nil)
		}
	})
	o := newFakeOutbox()
	w := testWorker(t, o, static(srv.URL))
	w.Client = &http.Client{Timeout: 100 * time.Millisecond}
	start(t, w)
	o.add(msg("p1", "{}"))

	waitFor(t, 3*time.Second, "delivery", func() bool { return o.deliveredCount() == 1 })
	_, delivered, _, _ := o.snapshot()
	if got := delivered[0]; got.Attempts != 1 || got.LastError != "timeout" {
		t.Errorf("Attempts=%d LastError=%q, want 1, timeout", got.Attempts, got.LastError)
	}
}

func TestUnresolvableWaitsThenDelivers(t *testing.T) {
	var hits atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	var known atomic.Bool
	o := newFakeOutbox()
	w := testWorker(t, o, func(m payment.Message) (Destination, bool) {
		if !known.Load() {
			return Destination{}, false
		}
		return Destination{URL: srv.URL}, true
	})
	start(t, w)
	o.add(msg("p1", "{}"))

	waitFor(t, 2*time.Second, "two failed attempts", func() bool {
		live, _, _, _ := o.snapshot()
		return len(live) == 1 && live[0].Attempts >= 2
	})
	live, _, _, _ := o.snapshot()
	if live[0].LastError != "destination not configured" {
		t.Errorf("LastError = %q", live[0].LastError)
	}
	if hits.Load() != 0 {
		t.Error("sent without a destination")
	}
	known.Store(true)
	w.Kick()
	waitFor(t, 2*time.Second, "delivery", func() bool { return o.deliveredCount() == 1 })
}

func TestCheckRejecting200IsRetried(t *testing.T) {
	var calls atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			io.WriteString(w, `{"jsonrpc":"2.0","error":{"code":-32000}}`)
			return
		}
		io.WriteString(w, `{"jsonrpc":"2.0","result":true}`)
	})
	check := func(body []byte) error {
		var r struct {
			Error *struct{ Code int } `json:"error"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return errors.New("not JSON")
		}
		if r.Error != nil {
			return fmt.Errorf("json-rpc error %d", r.Error.Code)
		}
		return nil
	}
	o := newFakeOutbox()
	start(t, testWorker(t, o, func(payment.Message) (Destination, bool) {
		return Destination{URL: srv.URL, Check: check}, true
	}))
	o.add(msg("p1", "{}"))

	waitFor(t, 2*time.Second, "delivery", func() bool { return o.deliveredCount() == 1 })
	_, delivered, _, _ := o.snapshot()
	if got := delivered[0]; got.Attempts != 1 || got.LastError != "rejected: json-rpc error -32000" {
		t.Errorf("Attempts=%d LastError=%q", got.Attempts, got.LastError)
	}
}

func TestHeadersResolvedPerAttempt(t *testing.T) {
	var mu sync.Mutex
	var sigs, ctypes []string
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sigs = append(sigs, r.Header.Get("X-Signature"))
		ctypes = append(ctypes, r.Header.Get("Content-Type"))
		n := len(sigs)
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	var n atomic.Int32
	o := newFakeOutbox()
	start(t, testWorker(t, o, func(m payment.Message) (Destination, bool) {
		h := http.Header{}
		h.Set("X-Signature", fmt.Sprintf("sig-%d-%s", n.Add(1), m.Body))
		return Destination{URL: srv.URL, Header: h}, true
	}))
	o.add(msg("p1", "body"))

	waitFor(t, 2*time.Second, "delivery", func() bool { return o.deliveredCount() == 1 })
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sigs) != "[sig-1-body sig-2-body]" {
		t.Errorf("signatures = %v, want one fresh per attempt", sigs)
	}
	if fmt.Sprint(ctypes) != "[application/json application/json]" {
		t.Errorf("content types = %v", ctypes)
	}
}

func TestEnqueuedAndKickWakeWithoutPolling(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {})
	o := newFakeOutbox()
	w := testWorker(t, o, static(srv.URL))
	w.Poll = time.Hour
	start(t, w)

	// Three in one queue: each next one must follow on its own, since
	// nothing else will wake the loop.
	for range 3 {
		o.add(msg("p1", "{}"))
	}
	waitFor(t, time.Second, "delivery after Enqueued", func() bool { return o.deliveredCount() == 3 })

	o.addQuiet(msg("p2", "{}"))
	w.Kick()
	waitFor(t, time.Second, "delivery after Kick", func() bool { return o.deliveredCount() == 4 })
}
