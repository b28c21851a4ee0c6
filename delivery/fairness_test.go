package delivery

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// A listener that hangs, with more payments queued for it than there are
// slots, must not take every slot from the other destinations: a healthy
// listener's message gets the first slot that frees, not one after the slow
// queues' backoff has outgrown their demand (about eight rounds of
// timeouts, 14 minutes at production settings).
func TestSlowListenerDoesNotStarveOthers(t *testing.T) {
	release := make(chan struct{})
	var slowAttempts atomic.Int64
	hang := server(t, func(w http.ResponseWriter, r *http.Request) {
		slowAttempts.Add(1)
		hold(r, release)
	})
	ok := server(t, func(w http.ResponseWriter, r *http.Request) {})
	t.Cleanup(func() { close(release) })
	urls := map[string]string{"hang": hang.URL, "ok": ok.URL}
	o := newFakeOutbox()
	w := testWorker(t, o, func(m payment.Message) (Destination, bool) {
		return Destination{URL: urls[m.Target]}, true
	})
	w.Client = &http.Client{Timeout: 200 * time.Millisecond}
	w.MinBackoff, w.MaxBackoff = 20*time.Millisecond, 12*time.Second
	w.Concurrency = 4
	start(t, w)
	for i := range 40 {
		o.add(payment.Message{Kind: "test", Target: "hang", PaymentID: fmt.Sprint("slow", i)})
	}
	waitFor(t, 5*time.Second, "the slow listener's first attempts", func() bool { return slowAttempts.Load() >= 4 })
	o.add(payment.Message{Kind: "test", Target: "ok", PaymentID: "healthy"})
	waitFor(t, 30*time.Second, "healthy delivery", func() bool { return o.deliveredCount() == 1 })
	// The four slots were the slow listener's; the healthy message takes
	// the first to free. A slot or two may start another slow attempt in
	// the meantime, but not round after round of them.
	if n := slowAttempts.Load(); n > 2*int64(w.Concurrency) {
		t.Fatalf("%d attempts on the hanging listener before the healthy listener's message went out", n)
	}
}
