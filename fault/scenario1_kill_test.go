//go:build fault

package fault

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
)

// exchange is a request that got a 2xx, with the answer it got.
type exchange struct {
	action     string // authorize or capture
	body       []byte
	status     int
	raw        []byte
	ans        answer
	afterFault bool // answered on a retry of the identical body after a transport error
}

// loadGen drives signed Commerce Layer flows against one Caddy and records
// what was acknowledged.
type loadGen struct {
	c      *caddy
	client *http.Client
	probs  *problems

	mu    sync.Mutex
	acked []*exchange

	requests, answers2xx, answers200, answers202 atomic.Int64
	faults, answeredAfterFault, replays          atomic.Int64
	told503                                      atomic.Int64 // answered 503: send it again
	// abort makes clients give up at once: the test is ending early.
	abort atomic.Bool
}

// send posts body until it gets an HTTP answer: a transport error (Caddy
// killed mid-request, or down) is retried with the identical body, every
// 50ms, for up to 40s, and so is a 503, which says that nothing was done
// and to send it again. ok is false when it never got one.
func (l *loadGen) send(path string, body []byte) (r response, afterFault, ok bool) {
	deadline := time.Now().Add(40 * time.Second)
	for {
		l.requests.Add(1)
		r, err := post(l.client, l.c.base, path, body, s1)
		if err == nil && r.Status == http.StatusServiceUnavailable {
			// Not a fault: the kills are proven by transport errors only.
			l.told503.Add(1)
			if time.Now().After(deadline) {
				l.probs.add("%s still answered 503 after 40s: %s", path, short(r.Body))
				return response{}, afterFault, false
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err == nil {
			return r, afterFault, true
		}
		l.faults.Add(1)
		afterFault = true
		if l.abort.Load() {
			return response{}, true, false
		}
		if time.Now().After(deadline) {
			l.probs.add("no answer to %s within 40s of retries: %v: %s", path, err, short(body))
			return response{}, true, false
		}
		l.client.CloseIdleConnections()
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends one operation, checks that it was acknowledged with a well
// formed 2xx (every token these flows use succeeds at the PSP), records
// it, and sometimes sends the identical body again, which must get the
// same answer byte for byte. It returns nil when the call was not
// acknowledged.
func (l *loadGen) call(action string, body []byte, amount int64) *exchange {
	r, afterFault, ok := l.send("/cl/"+action, body)
	if !ok {
		return nil
	}
	if afterFault {
		l.answeredAfterFault.Add(1)
	}
	if r.Status/100 != 2 {
		l.probs.add("%s refused (after a fault: %v): %s; body %s", action, afterFault, r, short(body))
		return nil
	}
	ans, err := parseAnswer(r.Body)
	switch {
	case err != nil || !ans.Success || ans.Error != nil:
		l.probs.add("%s: malformed 2xx answer: %s", action, r)
		return nil
	case ans.Data.TransactionToken == "" || ans.Data.Metadata["payment_id"] == "":
		l.probs.add("%s: 2xx answer without transaction_token or payment_id: %s", action, r)
		return nil
	case ans.Data.AmountCents != amount:
		l.probs.add("%s: amount_cents %d, want %d: %s", action, ans.Data.AmountCents, amount, r)
	case r.Status == http.StatusAccepted && ans.Data.ActionID == "":
		l.probs.add("%s: 202 without action_id: %s", action, r)
		return nil
	case r.Status != http.StatusOK && r.Status != http.StatusAccepted:
		l.probs.add("%s: unexpected success status: %s", action, r)
		return nil
	}
	l.answers2xx.Add(1)
	if r.Status == http.StatusOK {
		l.answers200.Add(1)
	} else {
		l.answers202.Add(1)
	}
	ex := &exchange{action: action, body: body, status: r.Status, raw: r.Body, ans: ans, afterFault: afterFault}
	l.mu.Lock()
	l.acked = append(l.acked, ex)
	l.mu.Unlock()

	if rand.IntN(4) == 0 {
		again, _, ok := l.send("/cl/"+action, body)
		if ok {
			l.replays.Add(1)
			if again.Status != r.Status || !bytes.Equal(again.Body, r.Body) {
				l.probs.add("%s repeated: got %s, want the first answer %s", action, again, r)
			}
		}
	}
	return ex
}

// syncFlow authorizes 1000 with a synchronous token, then captures it in
// two partial captures of 600 and 400.
func (l *loadGen) syncFlow() {
	id := uid()
	auth := l.call("authorize", authorizeBody("ep_"+id, "tok_visa_"+id, 1000), 1000)
	if auth == nil || auth.status != http.StatusOK {
		// A 202 (an authorization adopted after a crash) settles later; the
		// flow does not wait for it.
		return
	}
	token := auth.ans.Data.TransactionToken
	balance := int64(1000)
	for _, amount := range []int64{600, 400} {
		capture := l.call("capture", captureBody("au_"+id, token, 1000, amount, balance), amount)
		if capture == nil {
			return
		}
		balance -= amount
	}
}

// asyncFlow authorizes with tok_async: 202, then a callback.
func (l *loadGen) asyncFlow() {
	id := uid()
	l.call("authorize", authorizeBody("ep_"+id, "tok_async_"+id, 500), 500)
}

func (l *loadGen) exchanges() []*exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*exchange(nil), l.acked...)
}

// TestKill9UnderLoad kills Caddy with SIGKILL five times while clients send
// signed authorize→capture flows and asynchronous authorizations, restarting
// it on the same storage each time. Everything acknowledged must be in the
// store in the state it was acknowledged in, every accepted asynchronous
// operation must settle and be called back, and the sandbox must have
// executed no operation twice.
func TestKill9UnderLoad(t *testing.T) {
	fig := scenario(t, "kill-9-under-load")
	cb := newListener(t, s1)
	c := newCaddy(t, config{Secrets: []string{s1}, Callback: cb.URL()})
	c.start()

	l := &loadGen{c: c, client: newHTTPClient(), probs: &problems{}}
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// On an early end (t.Fatal), clients stop before Caddy does.
	defer func() { l.abort.Store(true); stopLoad(); wg.Wait() }()
	const syncWorkers, asyncWorkers = 4, 2
	for i := range syncWorkers + asyncWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if i < syncWorkers {
					l.syncFlow()
				} else {
					l.asyncFlow()
				}
			}
		}()
	}

	const restarts = 5
	var downtime time.Duration
	var kills, readies []time.Time
	for k := 1; k <= restarts; k++ {
		// Load for a while, with requests flowing, then kill.
		before := l.answers2xx.Load()
		time.Sleep(time.Duration(700+rand.IntN(600)) * time.Millisecond)
		if !waitUntil(10*time.Second, func() bool { return l.answers2xx.Load() >= before+20 }) {
			t.Fatalf("before kill %d: requests are not being answered (%d answers since the last start)\n%s",
				k, l.answers2xx.Load()-before, c.logTail(30))
		}
		killedAt := time.Now()
		c.kill9()
		time.Sleep(150 * time.Millisecond) // clients hit a closed port meanwhile
		c.start()
		downtime += time.Since(killedAt)
		kills, readies = append(kills, killedAt), append(readies, time.Now())
	}
	// Keep the load on a little after the last restart, then let every
	// client finish the call it is in.
	before := l.answers2xx.Load()
	if !waitUntil(10*time.Second, func() bool { return l.answers2xx.Load() >= before+20 }) {
		t.Errorf("after the last restart: requests are not being answered")
	}
	time.Sleep(time.Second)
	stopLoad()
	wg.Wait()
	exchanges := l.exchanges()

	// Settle: every 202 called back, every payment final, the outbox empty.
	settleStart := time.Now()
	open := map[string]bool{}
	for _, ex := range exchanges {
		open[ex.ans.Data.Metadata["payment_id"]] = true
	}
	var waitingFor string
	settled := waitUntil(30*time.Second, func() bool {
		delivered := cb.delivered()
		for _, ex := range exchanges {
			if ex.status == http.StatusAccepted {
				if _, ok := delivered[ex.ans.Data.ActionID]; !ok {
					waitingFor = "the callback of action " + ex.ans.Data.ActionID
					return false
				}
			}
		}
		for id := range open {
			p, err := c.getPayment(id)
			if err != nil || p == nil || p.open() {
				waitingFor = fmt.Sprintf("payment %s to settle (err %v)", id, err)
				return false
			}
			delete(open, id)
		}
		pending, err := c.outbox("pending")
		if err != nil || len(pending) > 0 {
			waitingFor = fmt.Sprintf("the outbox to drain (%d pending, err %v)", len(pending), err)
			return false
		}
		return true
	})
	settle := time.Since(settleStart)
	if !settled {
		t.Errorf("not settled within 30s of the last restart: still waiting for %s", waitingFor)
	}

	// Every acknowledged request is in the store, in the state it was
	// acknowledged in (now settled), and executed once at the PSP.
	entries := readLedger(t, c.cfg.Ledger)
	ledger := ledgerIndex(entries)
	delivered := cb.delivered()
	checked := map[string]*paymentView{}
	var missing, wrongState, unexecuted, notCalledBack int
	for _, ex := range exchanges {
		token := ex.ans.Data.TransactionToken
		p, err := c.getPayment(token)
		if err != nil {
			t.Fatalf("admin API: %v", err)
		}
		if p == nil {
			missing++
			t.Errorf("%s answered %d is not in the store (token %s): %s", ex.action, ex.status, token, ex.raw)
			continue
		}
		checked[p.ID] = p
		tx := p.tx(token)
		switch {
		case tx == nil:
			missing++
			t.Errorf("payment %s has no transaction %s answered %d", p.ID, token, ex.status)
			continue
		case p.ID != ex.ans.Data.Metadata["payment_id"]:
			t.Errorf("token %s is in payment %s, the answer said %s", token, p.ID, ex.ans.Data.Metadata["payment_id"])
		case tx.Kind != ex.action || tx.Amount != ex.ans.Data.AmountCents:
			t.Errorf("transaction %s is a %s of %d, answered as a %s of %d", token, tx.Kind, tx.Amount, ex.action, ex.ans.Data.AmountCents)
		}
		if ex.status == http.StatusOK && tx.State != "succeeded" {
			wrongState++
			t.Errorf("%s answered 200 is %s in the store (token %s)", ex.action, tx.State, token)
		}
		if ex.status == http.StatusAccepted {
			if tx.State != "pending" && tx.State != "succeeded" {
				wrongState++
				t.Errorf("%s answered 202 is %s in the store (token %s)", ex.action, tx.State, token)
			} else if tx.State != "succeeded" {
				t.Errorf("%s answered 202 has not settled: %s (token %s)", ex.action, tx.State, token)
			}
			if tx.ActionID != ex.ans.Data.ActionID {
				t.Errorf("transaction %s has action id %q, answered %q", token, tx.ActionID, ex.ans.Data.ActionID)
			}
			cbc, ok := delivered[ex.ans.Data.ActionID]
			if !ok {
				notCalledBack++
				t.Errorf("no callback delivered for action %s (%s answered 202)", ex.ans.Data.ActionID, ex.action)
			} else if !cbc.Success {
				t.Errorf("callback of action %s says success:false: %s", ex.ans.Data.ActionID, cbc.Body)
			}
		}
		if tx.State == "succeeded" && ledger[tx.Kind+" "+tx.PSPKey] == 0 {
			unexecuted++
			t.Errorf("%s %s succeeded in the store but the sandbox never executed it (key %s)", tx.Kind, token, tx.PSPKey)
		}
	}
	for id, p := range checked {
		var captured int64
		for _, tx := range p.Txs {
			if tx.Kind == "capture" && tx.State == "succeeded" {
				captured += tx.Amount
			}
		}
		if p.Captured != captured || p.Captured > p.Authorized {
			t.Errorf("payment %s: captured %d, authorized %d, sum of succeeded captures %d", id, p.Captured, p.Authorized, captured)
		}
	}
	dups := checkNoDoubleExecution(t, entries)
	unbooked := checkLedgerBooked(t, c, entries)
	explainDoubleExecutions(t, c, entries, kills, readies)
	l.probs.report(t, "client")
	cb.check(t)
	if dead, err := c.outbox("dead"); err != nil || len(dead) > 0 {
		t.Errorf("dead letters: %d (err %v)", len(dead), err)
	}
	if l.answeredAfterFault.Load() == 0 {
		t.Errorf("no request was cut by a kill and retried: the kills hit nothing in flight")
	}

	fig.set("requests", "%d", l.requests.Load())
	fig.set("2xx", "%d", l.answers2xx.Load())
	fig.set("200", "%d", l.answers200.Load())
	fig.set("202", "%d", l.answers202.Load())
	fig.set("transport_errors", "%d", l.faults.Load())
	fig.set("answered_after_retry", "%d", l.answeredAfterFault.Load())
	fig.set("told_503", "%d", l.told503.Load())
	fig.set("replays", "%d", l.replays.Load())
	fig.set("payments", "%d", len(checked))
	fig.set("ledger_lines", "%d", len(entries))
	fig.set("double_executions", "%d", dups)
	fig.set("unbooked_executions", "%d", unbooked)
	fig.set("restarts", "%d", restarts)
	fig.set("downtime", "%s", downtime.Round(time.Millisecond))
	fig.set("callbacks_delivered", "%d", len(delivered))
	fig.set("callback_duplicates", "%d", cb.duplicates())
	fig.set("missing", "%d", missing)
	fig.set("wrong_state", "%d", wrongState)
	fig.set("unexecuted", "%d", unexecuted)
	fig.set("not_called_back", "%d", notCalledBack)
	fig.set("time_to_settle", "%s", settle.Round(time.Millisecond))
}

// explainDoubleExecutions shows, for each (operation, key) the sandbox
// executed twice, when each execution happened relative to the kills, and
// the transaction the key belongs to: evidence for a bug report.
func explainDoubleExecutions(t *testing.T, c *caddy, entries []sandbox.Entry, kills, readies []time.Time) {
	t.Helper()
	byKey := map[string][]sandbox.Entry{}
	for _, e := range entries {
		byKey[e.Op+" "+e.Key] = append(byKey[e.Op+" "+e.Key], e)
	}
	shown := 0
	for k, es := range byKey {
		if len(es) < 2 || shown == 5 {
			continue
		}
		shown++
		var b strings.Builder
		fmt.Fprintf(&b, "double execution of %s:", k)
		for _, e := range es {
			fmt.Fprintf(&b, "\n    executed at %s", e.Time.Format("15:04:05.000000"))
			for i, kill := range kills {
				if d := kill.Sub(e.Time); d >= 0 && d < time.Second {
					fmt.Fprintf(&b, " (%s before kill %d)", d.Round(time.Microsecond), i+1)
				}
				if d := e.Time.Sub(readies[i]); d >= -time.Second && d < time.Second && e.Time.After(kill) {
					fmt.Fprintf(&b, " (after kill %d; restart %d ready at %s)", i+1, i+1, readies[i].Format("15:04:05.000000"))
				}
			}
		}
		if p, err := c.getPayment(es[0].Key); err == nil && p != nil {
			for _, tx := range p.Txs {
				if tx.PSPKey == es[0].Key {
					fmt.Fprintf(&b, "\n    transaction %s: %s %s, state %s, action_id %q", tx.ID, tx.Kind, tx.Token, tx.State, tx.ActionID)
				}
			}
		}
		t.Log(b.String())
	}
}
