//go:build fault

package fault

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestPSPOutage: with the PSP unreachable (tok_outage_*, sandbox outage 2s)
// and a deadline of 300ms, calls are answered within the deadline (plus
// slack): 202 under `unavailable async` (the default), 502
// gateway_unavailable under `unavailable fail`. Once the outage is over, the
// work queued for the 202s completes and is called back with success:true;
// the 502s were never executed at the PSP.
func TestPSPOutage(t *testing.T) {
	fig := scenario(t, "psp-outage")
	const (
		deadline = 300 * time.Millisecond
		outage   = 2 * time.Second
		// slack covers the store writes around the PSP call on a loaded
		// 2-core machine; deadline+slack stays well under the outage, so an
		// answer that waited for the PSP cannot pass.
		slack = time.Second
		n     = 10 // calls per handler
	)
	cb := newListener(t, s1)
	c := newCaddy(t, config{Secrets: []string{s1}, Callback: cb.URL(), Deadline: "300ms", Outage: "2s"})
	c.start()
	client := newHTTPClient()

	type call struct {
		path   string
		body   []byte
		r      response
		err    error
		ans    answer
		parsed bool
	}
	calls := make([]*call, 0, 2*n)
	for i := range 2 * n {
		path := "/cl/authorize"
		if i%2 == 1 {
			path = "/clfail/authorize"
		}
		id := uid()
		calls = append(calls, &call{path: path, body: authorizeBody("ep_"+id, "tok_outage_"+id, 1000)})
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, cl := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.r, cl.err = post(client, c.base, cl.path, cl.body, s1)
			if cl.err == nil {
				a, err := parseAnswer(cl.r.Body)
				cl.ans, cl.parsed = a, err == nil
			}
		}()
	}
	wg.Wait()
	sentIn := time.Since(start)
	outageEnds := start.Add(outage)

	var accepted, failed []*call
	var slowest time.Duration
	for _, cl := range calls {
		if cl.err != nil {
			t.Errorf("%s: no answer: %v", cl.path, cl.err)
			continue
		}
		slowest = max(slowest, cl.r.Elapsed)
		if cl.r.Elapsed > deadline+slack {
			t.Errorf("%s answered after %s, want within the deadline %s (+%s slack): %s", cl.path, cl.r.Elapsed, deadline, slack, cl.r)
		}
		if !cl.parsed {
			t.Errorf("%s: answer is not JSON: %s", cl.path, cl.r)
			continue
		}
		switch cl.path {
		case "/cl/authorize":
			if cl.r.Status != http.StatusAccepted || !cl.ans.Success || cl.ans.Data.ActionID == "" || cl.ans.Data.TransactionToken == "" {
				t.Errorf("unavailable async: got %s, want 202 with an action_id", cl.r)
				continue
			}
			accepted = append(accepted, cl)
		default:
			if cl.r.Status != http.StatusBadGateway || cl.ans.Success || cl.ans.Error == nil || cl.ans.Error.Code != "gateway_unavailable" {
				t.Errorf("unavailable fail: got %s, want 502 gateway_unavailable", cl.r)
				continue
			}
			failed = append(failed, cl)
		}
	}
	if time.Now().After(outageEnds) {
		t.Errorf("sending the calls took %s, past the outage: the test proves nothing about it", sentIn)
	}

	// Recovery: every 202 is completed in the background and called back.
	var settledAt time.Time
	ok := waitUntil(outage+20*time.Second, func() bool {
		delivered := cb.delivered()
		for _, cl := range accepted {
			if _, ok := delivered[cl.ans.Data.ActionID]; !ok {
				return false
			}
		}
		settledAt = time.Now()
		return true
	})
	if !ok {
		t.Errorf("the 202s were not all called back within 20s of the outage's end: %d of %d", len(cb.delivered()), len(accepted))
	}
	delivered := cb.delivered()
	for _, cl := range accepted {
		cbc, ok := delivered[cl.ans.Data.ActionID]
		if !ok {
			continue
		}
		if !cbc.Success {
			t.Errorf("callback of %s says success:false: %s", cl.ans.Data.ActionID, cbc.Body)
		}
		if cbc.At.Before(outageEnds.Add(-deadline)) {
			t.Errorf("callback of %s arrived at %s, before the outage ended", cl.ans.Data.ActionID, cbc.At.Sub(start))
		}
	}

	entries := readLedger(t, c.cfg.Ledger)
	ledger := ledgerIndex(entries)
	for _, cl := range accepted {
		p, err := c.getPayment(cl.ans.Data.TransactionToken)
		if err != nil || p == nil {
			t.Errorf("payment of %s: %v (found: %v)", cl.ans.Data.TransactionToken, err, p != nil)
			continue
		}
		tx := p.tx(cl.ans.Data.TransactionToken)
		if tx == nil || tx.State != "succeeded" || p.Authorized != 1000 {
			t.Errorf("after recovery, the authorization answered 202 is %+v (payment authorized %d), want succeeded", tx, p.Authorized)
			continue
		}
		if ledger["authorize "+tx.PSPKey] != 1 {
			t.Errorf("authorization %s executed %d times at the PSP, want once", tx.Token, ledger["authorize "+tx.PSPKey])
		}
	}
	for _, cl := range failed {
		p, err := c.getPayment(cl.ans.Data.TransactionToken)
		if err != nil || p == nil {
			t.Errorf("payment of the 502'd %s: %v (found: %v)", cl.ans.Data.TransactionToken, err, p != nil)
			continue
		}
		tx := p.tx(cl.ans.Data.TransactionToken)
		if tx == nil || tx.State != "failed" || tx.Code != "gateway_unavailable" {
			t.Errorf("the authorization answered 502 is %+v, want failed gateway_unavailable", tx)
			continue
		}
		// The platform was told it failed: it must not have been charged
		// (or, had it gone through, it must have been voided).
		if ledger["authorize "+tx.PSPKey] > 0 && ledger["void "+tx.PSPKey+"_void"] == 0 {
			t.Errorf("authorization %s answered 502 was executed at the PSP and not voided", tx.Token)
		}
	}
	dups := checkNoDoubleExecution(t, entries)
	cb.check(t)
	if pending, err := c.outbox("pending"); err != nil || len(pending) > 0 {
		t.Errorf("outbox not drained: %d pending (err %v)", len(pending), err)
	}

	fig.set("requests", "%d", len(calls))
	fig.set("202", "%d", len(accepted))
	fig.set("502", "%d", len(failed))
	fig.set("slowest_answer", "%s", slowest.Round(time.Millisecond))
	fig.set("bound", "%s", deadline+slack)
	fig.set("callbacks_delivered", "%d", len(delivered))
	fig.set("ledger_lines", "%d", len(entries))
	fig.set("double_executions", "%d", dups)
	if !settledAt.IsZero() {
		fig.set("settled_after_outage_end", "%s", settledAt.Sub(outageEnds).Round(time.Millisecond))
	}
}
