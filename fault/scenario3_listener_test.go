//go:build fault

package fault

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestListenerOutage: the callback listener answers 503 for 2s, then 200.
// Deliveries resume, nothing is lost, and per payment the callbacks keep
// their order: an asynchronous capture's callback never goes out before
// the callback of the asynchronous authorization it captures.
func TestListenerOutage(t *testing.T) {
	fig := scenario(t, "listener-outage")
	const (
		payments = 10
		down     = 2 * time.Second
	)
	cb := newListener(t, s1)
	cb.status.Store(http.StatusServiceUnavailable)
	c := newCaddy(t, config{Secrets: []string{s1}, Callback: cb.URL()})
	c.start()
	downSince := time.Now()
	client := newHTTPClient()

	type flow struct {
		authAction, captureAction string
		authToken, captureToken   string
	}
	flows := make([]*flow, payments)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, fmt.Sprintf(format, args...))
	}
	for i := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := &flow{}
			id := uid()
			r, err := post(client, c.base, "/cl/authorize", authorizeBody("ep_"+id, "tok_async_"+id, 1000), s1)
			if err != nil {
				fail("authorize: %v", err)
				return
			}
			a, err := parseAnswer(r.Body)
			if err != nil || r.Status != http.StatusAccepted || a.Data.ActionID == "" {
				fail("authorize: got %s, want 202 with an action_id", r)
				return
			}
			f.authAction, f.authToken = a.Data.ActionID, a.Data.TransactionToken
			// The capture needs the authorization settled at the PSP
			// (async_delay 200ms); its callback cannot get through yet.
			if !waitUntil(5*time.Second, func() bool {
				p, err := c.getPayment(f.authToken)
				return err == nil && p != nil && p.tx(f.authToken) != nil && p.tx(f.authToken).State == "succeeded"
			}) {
				fail("authorization %s did not settle within 5s", f.authToken)
				return
			}
			r, err = post(client, c.base, "/cl/capture", captureBody("au_"+id, f.authToken, 1000, 1000, 1000), s1)
			if err != nil {
				fail("capture: %v", err)
				return
			}
			a, err = parseAnswer(r.Body)
			if err != nil || r.Status != http.StatusAccepted || a.Data.ActionID == "" {
				fail("capture: got %s, want 202 with an action_id", r)
				return
			}
			f.captureAction, f.captureToken = a.Data.ActionID, a.Data.TransactionToken
			mu.Lock()
			flows[i] = f
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}
	// Both operations of every payment settle while the listener is down.
	if !waitUntil(5*time.Second, func() bool {
		for _, f := range flows {
			p, err := c.getPayment(f.captureToken)
			if err != nil || p == nil || p.open() {
				return false
			}
		}
		return true
	}) {
		t.Fatal("the captures did not settle within 5s")
	}
	if left := down - time.Since(downSince); left > 0 {
		time.Sleep(left)
	} else {
		t.Errorf("setting up took %s, longer than the listener outage (%s)", time.Since(downSince), down)
	}
	cb.status.Store(http.StatusOK)
	refusedDuringOutage := 0
	for _, cl := range cb.all() {
		if cl.Answered == http.StatusServiceUnavailable {
			refusedDuringOutage++
		}
	}
	upSince := time.Now()

	var allDelivered time.Time
	if waitUntil(15*time.Second, func() bool {
		d := cb.delivered()
		for _, f := range flows {
			if _, ok := d[f.authAction]; !ok {
				return false
			}
			if _, ok := d[f.captureAction]; !ok {
				return false
			}
		}
		allDelivered = time.Now()
		return true
	}) {
		fig.set("time_to_deliver_after_recovery", "%s", allDelivered.Sub(upSince).Round(time.Millisecond))
	} else {
		t.Errorf("not every callback was delivered within 15s of the listener's recovery")
	}

	// Order per payment: no attempt of the capture's callback (whatever it
	// was answered) before the authorization's callback was delivered.
	calls := cb.all()
	delivered := cb.delivered()
	outOfOrder, lost := 0, 0
	for _, f := range flows {
		auth, okA := delivered[f.authAction]
		capt, okC := delivered[f.captureAction]
		if !okA || !okC {
			lost++
			t.Errorf("payment of %s: authorization callback delivered %v, capture callback delivered %v", f.authToken, okA, okC)
			continue
		}
		if !auth.Success || !capt.Success {
			t.Errorf("callbacks say success:false: %s / %s", auth.Body, capt.Body)
		}
		for _, cl := range calls {
			if cl.ActionID == f.captureAction && cl.N < auth.N {
				outOfOrder++
				t.Errorf("the capture's callback (%s, request #%d, answered %d) went out before the authorization's was delivered (request #%d)",
					f.captureAction, cl.N, cl.Answered, auth.N)
				break
			}
		}
	}
	// Every callback is one we are owed.
	owed := map[string]bool{}
	for _, f := range flows {
		owed[f.authAction], owed[f.captureAction] = true, true
	}
	for _, cl := range calls {
		if !owed[cl.ActionID] {
			t.Errorf("callback for an action nobody was answered 202 for: %s", cl.Body)
		}
	}
	if refusedDuringOutage == 0 {
		t.Error("no callback was attempted during the listener outage: the test proves nothing")
	}
	cb.check(t)
	if pending, err := c.outbox("pending"); err != nil || len(pending) > 0 {
		t.Errorf("outbox not drained: %d pending (err %v)", len(pending), err)
	}
	if dead, err := c.outbox("dead"); err != nil || len(dead) > 0 {
		t.Errorf("dead letters: %d (err %v)", len(dead), err)
	}
	entries := readLedger(t, c.cfg.Ledger)
	dups := checkNoDoubleExecution(t, entries)

	fig.set("payments", "%d", payments)
	fig.set("callbacks_owed", "%d", 2*payments)
	fig.set("attempts_refused_503", "%d", refusedDuringOutage)
	fig.set("attempts_total", "%d", len(calls))
	fig.set("delivered", "%d", len(delivered))
	fig.set("duplicates", "%d", cb.duplicates())
	fig.set("out_of_order", "%d", outOfOrder)
	fig.set("lost", "%d", lost)
	fig.set("ledger_lines", "%d", len(entries))
	fig.set("double_executions", "%d", dups)
}
