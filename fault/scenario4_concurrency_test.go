//go:build fault

package fault

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

type fired struct {
	body []byte
	r    response
	err  error
	ans  answer
}

// fire sends the bodies to path at the same moment (all goroutines wait on
// one gate) and returns the results in the bodies' order.
func fire(client *http.Client, c *caddy, path string, bodies [][]byte) []fired {
	out := make([]fired, len(bodies))
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i, b := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			out[i].body = b
			out[i].r, out[i].err = post(client, c.base, path, b, s1)
			if out[i].err == nil {
				out[i].ans, _ = parseAnswer(out[i].r.Body)
			}
		}()
	}
	close(gate)
	wg.Wait()
	return out
}

// TestConcurrentPartialOperations: 100 concurrent partial captures of 10 on
// an authorization of 1000 all succeed and a 101st is refused; then 150
// concurrent refunds of 10 on a capture of 1000: exactly 100 succeed. The
// payment totals (admin API) and the sandbox ledger agree.
func TestConcurrentPartialOperations(t *testing.T) {
	fig := scenario(t, "concurrent-partials")
	cb := newListener(t, s1)
	c := newCaddy(t, config{Secrets: []string{s1}, Callback: cb.URL()})
	c.start()
	client := newHTTPClient()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 200
	requests := 0

	mustOK := func(path string, body []byte) answer {
		t.Helper()
		requests++
		r, err := post(client, c.base, path, body, s1)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		a, err := parseAnswer(r.Body)
		if err != nil || r.Status != http.StatusOK || !a.Success {
			t.Fatalf("%s: got %s, want 200", path, r)
		}
		return a
	}
	// count tallies answers: 200s with the amount, refusals by code.
	count := func(what string, res []fired, amount int64) (ok int, refused map[string]int) {
		t.Helper()
		refused = map[string]int{}
		for _, f := range res {
			requests++
			switch {
			case f.err != nil:
				t.Errorf("%s: no answer: %v", what, f.err)
			case f.r.Status == http.StatusOK && f.ans.Success && f.ans.Data.AmountCents == amount && f.ans.Data.TransactionToken != "":
				ok++
			case f.r.Status == http.StatusUnprocessableEntity && f.ans.Error != nil:
				refused[f.ans.Error.Code]++
			default:
				t.Errorf("%s: unexpected answer %s", what, f.r)
			}
		}
		return ok, refused
	}

	// Captures: 100 of 10 on 1000, at once.
	id := uid()
	authToken := mustOK("/cl/authorize", authorizeBody("ep_"+id, "tok_visa_"+id, 1000)).Data.TransactionToken
	captures := make([][]byte, 100)
	for i := range captures {
		captures[i] = captureBody("au_"+id, authToken, 1000, 10, 1000-int64(10*i))
	}
	start := time.Now()
	res := fire(client, c, "/cl/capture", captures)
	capturesIn := time.Since(start)
	okCaptures, refusedCaptures := count("capture", res, 10)
	if okCaptures != 100 || len(refusedCaptures) != 0 {
		t.Errorf("100 concurrent captures of 10 on 1000: %d succeeded, refused %v; want all 100 to succeed", okCaptures, refusedCaptures)
	}
	// The 101st finds nothing left.
	requests++
	r, err := post(client, c.base, "/cl/capture", captureBody("au_"+id, authToken, 1000, 10, 0), s1)
	a101, _ := parseAnswer(r.Body)
	refused101 := err == nil && r.Status == http.StatusUnprocessableEntity && a101.Error != nil && a101.Error.Code == "amount_exceeds_balance"
	if !refused101 {
		t.Errorf("the 101st capture of 10: got %s (err %v), want 422 amount_exceeds_balance", r, err)
	}
	// Repeats of the 100, at once: the first answers again, byte for byte.
	replays := fire(client, c, "/cl/capture", captures)
	replayed := 0
	for i, f := range replays {
		requests++
		if f.err != nil || f.r.Status != res[i].r.Status || !bytes.Equal(f.r.Body, res[i].r.Body) {
			t.Errorf("repeat of capture %d: got %s (err %v), want the first answer %s", i, f.r, f.err, res[i].r)
			continue
		}
		replayed++
	}

	// Refunds: 150 of 10 on a capture of 1000, at once: exactly 100 fit.
	id2 := uid()
	auth2 := mustOK("/cl/authorize", authorizeBody("ep_"+id2, "tok_visa_"+id2, 1000)).Data.TransactionToken
	captureToken := mustOK("/cl/capture", captureBody("au_"+id2, auth2, 1000, 1000, 1000)).Data.TransactionToken
	refunds := make([][]byte, 150)
	for i := range refunds {
		refunds[i] = refundBody("cap_"+id2, fmt.Sprintf("NR-%s/R/%03d", id2, i), captureToken, 1000, 10, 1000)
	}
	start = time.Now()
	rres := fire(client, c, "/cl/refund", refunds)
	refundsIn := time.Since(start)
	okRefunds, refusedRefunds := count("refund", rres, 10)
	if okRefunds != 100 || refusedRefunds["amount_exceeds_balance"] != 50 || len(refusedRefunds) != 1 {
		t.Errorf("150 concurrent refunds of 10 on a capture of 1000: %d succeeded, refused %v; want exactly 100 and 50 amount_exceeds_balance", okRefunds, refusedRefunds)
	}

	// The store agrees.
	p1, err := c.getPayment(authToken)
	if err != nil || p1 == nil {
		t.Fatalf("payment of %s: %v", authToken, err)
	}
	p2, err := c.getPayment(captureToken)
	if err != nil || p2 == nil {
		t.Fatalf("payment of %s: %v", captureToken, err)
	}
	sum := func(p *paymentView, kind string) (n int, total int64, other int) {
		for _, tx := range p.Txs {
			if tx.Kind != kind {
				continue
			}
			if tx.State == "succeeded" {
				n++
				total += tx.Amount
			} else {
				other++
			}
		}
		return
	}
	if n, total, other := sum(p1, "capture"); p1.Authorized != 1000 || p1.Captured != 1000 || n != 100 || total != 1000 || other != 0 {
		t.Errorf("payment %s: authorized %d captured %d; %d succeeded captures totalling %d, %d others; want 1000, 1000, 100, 1000, 0",
			p1.ID, p1.Authorized, p1.Captured, n, total, other)
	}
	if n, total, other := sum(p2, "refund"); p2.Captured != 1000 || p2.Refunded != 1000 || n != 100 || total != 1000 || other != 0 {
		t.Errorf("payment %s: captured %d refunded %d; %d succeeded refunds totalling %d, %d others; want 1000, 1000, 100, 1000, 0",
			p2.ID, p2.Captured, p2.Refunded, n, total, other)
	}
	// And the PSP executed exactly those operations, once each.
	entries := readLedger(t, c.cfg.Ledger)
	dups := checkNoDoubleExecution(t, entries)
	ledger := ledgerIndex(entries)
	var ledgerCaptured, ledgerRefunded int64
	var ledgerCaptures, ledgerRefunds int
	for _, e := range entries {
		switch e.Op {
		case "capture":
			ledgerCaptures++
			ledgerCaptured += e.Amount
		case "refund":
			ledgerRefunds++
			ledgerRefunded += e.Amount
		}
	}
	if ledgerCaptures != 101 || ledgerCaptured != 2000 || ledgerRefunds != 100 || ledgerRefunded != 1000 {
		t.Errorf("ledger: %d captures totalling %d, %d refunds totalling %d; want 101 / 2000 and 100 / 1000",
			ledgerCaptures, ledgerCaptured, ledgerRefunds, ledgerRefunded)
	}
	for _, p := range []*paymentView{p1, p2} {
		for _, tx := range p.Txs {
			if tx.State == "succeeded" && ledger[tx.Kind+" "+tx.PSPKey] != 1 {
				t.Errorf("%s %s (key %s) is in the ledger %d times, want once", tx.Kind, tx.Token, tx.PSPKey, ledger[tx.Kind+" "+tx.PSPKey])
			}
		}
	}

	fig.set("requests", "%d", requests)
	fig.set("captures_200", "%d/100", okCaptures)
	fig.set("capture_101_refused", "%v", refused101)
	fig.set("captures_in", "%s", capturesIn.Round(time.Millisecond))
	fig.set("replays_identical", "%d/100", replayed)
	fig.set("refunds_200", "%d/150", okRefunds)
	fig.set("refunds_422", "%d", refusedRefunds["amount_exceeds_balance"])
	fig.set("refunds_in", "%s", refundsIn.Round(time.Millisecond))
	fig.set("captured", "%d", p1.Captured)
	fig.set("refunded", "%d", p2.Refunded)
	fig.set("ledger_lines", "%d", len(entries))
	fig.set("double_executions", "%d", dups)
}
