package caddymodule

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSyncAuthorizeCaptureRefund(t *testing.T) {
	e := newEnv(t)

	r := e.send("authorize", authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))
	data := assertOK(t, r, http.StatusOK)
	if got := keys(data); strings.Join(got, ",") != "amount_cents,metadata,transaction_token" {
		t.Errorf("authorize data keys %v, want amount_cents, metadata, transaction_token: %s", got, r.Body)
	}
	auth := str(t, data, "transaction_token")
	if got := num(t, data, "amount_cents"); got != 1000 {
		t.Errorf("authorized %d, want 1000", got)
	}
	meta, ok := data["metadata"].(map[string]any)
	if !ok || meta["payment_id"] == nil || meta["payment_id"] == "" {
		t.Errorf("metadata without payment_id: %s", r.Body)
	}

	// partial captures: 300, 300, then the rest
	c1 := e.capture(auth, 1000, 300)
	r = e.send("capture", captureDoc("au_"+uid(), auth, 1000, 300, 700))
	c2 := str(t, assertOK(t, r, http.StatusOK), "transaction_token")
	c3 := e.capture(auth, 1000, 400)
	if c1 == c2 || c2 == c3 || c1 == c3 || c1 == auth {
		t.Errorf("transaction tokens are not distinct: auth %s captures %s %s %s", auth, c1, c2, c3)
	}
	assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 1, 0)), http.StatusUnprocessableEntity, "amount_exceeds_balance")

	// refunds of c1 (300): 100 three times, then nothing is left
	for i := range 3 {
		data := assertOK(t, e.send("refund", refundDoc("ca_"+uid(), c1, 300, 100, int64(300-100*i))), http.StatusOK)
		if got := num(t, data, "amount_cents"); got != 100 {
			t.Errorf("refund %d: %d, want 100", i, got)
		}
	}
	assertError(t, e.send("refund", refundDoc("ca_"+uid(), c1, 300, 100, 0)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
	// refunds are per capture: c3 (400) is whole; a refund without a
	// partial amount refunds the capture's amount_cents
	d := refundDoc("ca_"+uid(), c3, 400, 0, 400)
	delete(attrs(d), "refund_amount_cents")
	data = assertOK(t, e.send("refund", d), http.StatusOK)
	if got := num(t, data, "amount_cents"); got != 400 {
		t.Errorf("full refund %d, want 400", got)
	}
	assertError(t, e.send("refund", refundDoc("ca_"+uid(), c3, 400, 1, 0)), http.StatusUnprocessableEntity, "amount_exceeds_balance")

	ops := countOps(readLedger(t, e.ledger))
	if ops["authorize"] != 1 || ops["capture"] != 3 || ops["refund"] != 4 {
		t.Errorf("ledger %v, want 1 authorize, 3 capture, 4 refund", ops)
	}
}

func TestSyncCaptureWithoutPartialAmount(t *testing.T) {
	e := newEnv(t)
	auth := e.authorize("tok_visa_"+uid(), 2500)
	// capture_amount_cents 0 (Commerce Layer's "no partial amount"): amount_cents
	data := assertOK(t, e.send("capture", captureDoc("au_"+uid(), auth, 2500, 0, 2500)), http.StatusOK)
	if got := num(t, data, "amount_cents"); got != 2500 {
		t.Errorf("captured %d, want 2500", got)
	}
}

func TestSyncVoid(t *testing.T) {
	e := newEnv(t)
	auth := e.authorize("tok_visa_"+uid(), 1200)
	r := e.send("void", voidDoc("au_"+uid(), auth, 1200))
	data := assertOK(t, r, http.StatusOK)
	void := str(t, data, "transaction_token")
	if void == auth {
		t.Errorf("the void has the authorization's token")
	}
	if got := num(t, data, "amount_cents"); got != 1200 {
		t.Errorf("voided %d, want 1200", got)
	}
	// a second (different) void call of a voided payment is a no-op that
	// reports the void
	data = assertOK(t, e.send("void", voidDoc("au_"+uid(), auth, 1200)), http.StatusOK)
	if got := str(t, data, "transaction_token"); got != void {
		t.Errorf("second void answered token %s, want the first void's %s", got, void)
	}
	assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1200, 100, 1200)), http.StatusConflict, "invalid_state")
	if ops := countOps(readLedger(t, e.ledger)); ops["void"] != 1 {
		t.Errorf("ledger %v, want one void", ops)
	}
}

func TestSyncToken(t *testing.T) {
	e := newEnv(t)
	src := "tok_visa_" + uid()
	r := e.send("token", tokenDoc("ep_"+uid(), src))
	data := assertOK(t, r, http.StatusOK)
	if got := keys(data); strings.Join(got, ",") != "customer_token,payment_source_token" {
		t.Errorf("token data keys %v, want customer_token, payment_source_token: %s", got, r.Body)
	}
	str(t, data, "customer_token")
	if saved := str(t, data, "payment_source_token"); !strings.HasPrefix(saved, src) {
		t.Errorf("saved source %q does not keep the source's behaviour (prefix %q)", saved, src)
	}
	// the order is optional for token
	d := tokenDoc("ep_"+uid(), "tok_visa_"+uid())
	delete(d, "included")
	assertOK(t, e.send("token", d), http.StatusOK)

	t.Run("declined", func(t *testing.T) {
		assertError(t, e.send("token", tokenDoc("ep_"+uid(), "tok_decline_"+uid())), http.StatusUnprocessableEntity, "card_declined")
	})
	t.Run("unavailable is 502, never 202", func(t *testing.T) {
		// /cl/ has unavailable async: token calls still cannot go async
		r := e.send("token", tokenDoc("ep_"+uid(), "tok_unavailable_"+uid()))
		assertError(t, r, http.StatusBadGateway, "gateway_unavailable")
		r = post(t, failPath+"token", mustJSON(t, tokenDoc("ep_"+uid(), "tok_unavailable_"+uid())), e.secret)
		assertError(t, r, http.StatusBadGateway, "gateway_unavailable")
	})
	if ops := countOps(readLedger(t, e.ledger)); ops["vault"] != 2 || len(ops) != 1 {
		t.Errorf("ledger %v, want 2 vault", ops)
	}
}

// --- asynchronous operations ------------------------------------------------

// async202 checks a 202 answer and returns its action_id.
func async202(t *testing.T, r response) (actionID, token string) {
	t.Helper()
	data := assertOK(t, r, http.StatusAccepted)
	return str(t, data, "action_id"), str(t, data, "transaction_token")
}

func TestAsyncEveryAction(t *testing.T) {
	e := newEnv(t)
	src := "tok_async_" + uid()
	seen := map[string]bool{}
	unique := func(id string) {
		t.Helper()
		if seen[id] {
			t.Errorf("action_id %s used twice", id)
		}
		seen[id] = true
	}
	settle := func(action, wantMessage string) {
		t.Helper()
		c := e.cb.waitAction(t, action, 5*time.Second)
		data := checkCallback(t, c, e.secret, action, true)
		if data["message"] != wantMessage {
			t.Errorf("callback message %v, want %q", data["message"], wantMessage)
		}
	}

	// authorize
	start := time.Now()
	a1, auth := async202(t, e.send("authorize", authorizeDoc("ep_"+uid(), src, 1000)))
	unique(a1)
	settle(a1, "Payment authorized")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("authorization settled after %s, before async_delay 200ms", d)
	}
	// capture (of the now authorized payment)
	a2, capt := async202(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 600, 1000)))
	unique(a2)
	settle(a2, "Payment captured")
	// refund
	a3, _ := async202(t, e.send("refund", refundDoc("ca_"+uid(), capt, 600, 200, 600)))
	unique(a3)
	settle(a3, "Payment refunded")
	// void, on another authorization
	a4, auth2 := async202(t, e.send("authorize", authorizeDoc("ep_"+uid(), "tok_async_"+uid(), 500)))
	unique(a4)
	settle(a4, "Payment authorized")
	a5, _ := async202(t, e.send("void", voidDoc("au_"+uid(), auth2, 500)))
	unique(a5)
	settle(a5, "Authorization voided")
	assertError(t, e.send("capture", captureDoc("au_"+uid(), auth2, 500, 500, 500)), http.StatusConflict, "invalid_state")

	// exactly one delivered callback per action
	time.Sleep(300 * time.Millisecond)
	count := map[string]int{}
	for _, c := range e.cb.delivered() {
		count[actionOf(c.Body)]++
	}
	for id := range seen {
		if count[id] != 1 {
			t.Errorf("action %s: %d callbacks, want 1", id, count[id])
		}
	}
	if len(count) != len(seen) {
		t.Errorf("callbacks for unknown actions: %v", count)
	}
	ops := countOps(readLedger(t, e.ledger))
	if ops["authorize"] != 2 || ops["capture"] != 1 || ops["refund"] != 1 || ops["void"] != 1 {
		t.Errorf("ledger %v", ops)
	}
}

func TestAsyncCaptureBeforeAuthorizationSettles(t *testing.T) {
	e := newEnv(t)
	_, auth := async202(t, e.send("authorize", authorizeDoc("ep_"+uid(), "tok_async_"+uid(), 1000)))
	assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 1000, 1000)), http.StatusConflict, "invalid_state")
}

func TestAsyncDecline(t *testing.T) {
	e := newEnv(t)
	action, auth := async202(t, e.send("authorize", authorizeDoc("ep_"+uid(), "tok_async_decline_"+uid(), 1000)))
	c := e.cb.waitAction(t, action, 5*time.Second)
	data := checkCallback(t, c, e.secret, action, false)
	if data["error_code"] != "card_declined" {
		t.Errorf("callback error_code %v, want card_declined: %s", data["error_code"], c.Body)
	}
	// a refused authorization cannot be captured
	assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 1000, 1000)), http.StatusConflict, "invalid_state")
}

func TestAsync3DS(t *testing.T) {
	e := newEnv(t)
	action, auth := async202(t, e.send("authorize", authorizeDoc("ep_"+uid(), "tok_3ds_"+uid(), 1000)))
	c := e.cb.waitAction(t, action, 5*time.Second)
	checkCallback(t, c, e.secret, action, true)
	e.capture(auth, 1000, 1000)
}

func TestAsyncOutageRecovers(t *testing.T) {
	e := newEnv(t)
	start := time.Now()
	r := e.send("authorize", authorizeDoc("ep_"+uid(), "tok_outage_"+uid(), 1000))
	action, auth := async202(t, r)
	// answered at the 300ms deadline, well before the 500ms outage ends
	if r.Elapsed > 2*time.Second {
		t.Errorf("202 took %s", r.Elapsed)
	}
	c := e.cb.waitAction(t, action, 5*time.Second)
	if d := c.At.Sub(start); d < 500*time.Millisecond {
		t.Errorf("callback %s after the request, before the 500ms outage ended", d)
	}
	checkCallback(t, c, e.secret, action, true)
	// the payment is authorized now (a capture, a new operation, would
	// meet an outage of its own, so it is not tried here)
	assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 1001, 1000)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
	entries := readLedger(t, e.ledger)
	ledgerKeysUnique(t, entries)
	if ops := countOps(entries); ops["authorize"] != 1 {
		t.Errorf("ledger %v, want one authorize", ops)
	}
}

func TestAsyncUnavailableTimesOut(t *testing.T) {
	e := newEnv(t)
	action, _ := async202(t, e.send("authorize", authorizeDoc("ep_"+uid(), "tok_unavailable_"+uid(), 1000)))
	c := e.cb.waitAction(t, action, 8*time.Second)
	data := checkCallback(t, c, e.secret, action, false)
	if data["error_code"] != "gateway_unavailable" {
		t.Errorf("callback error_code %v, want gateway_unavailable: %s", data["error_code"], c.Body)
	}
	if n := len(readLedger(t, e.ledger)); n != 0 {
		t.Errorf("%d ledger lines for an unreachable PSP", n)
	}
}

func TestAsyncCallbackRetriedUntilAccepted(t *testing.T) {
	e := newEnv(t)
	e.cb.status.Store(http.StatusServiceUnavailable)
	action, _ := async202(t, e.send("authorize", authorizeDoc("ep_"+uid(), "tok_async_"+uid(), 1000)))
	if !waitUntil(5*time.Second, func() bool { return len(e.cb.all()) > 0 }) {
		t.Fatal("no callback attempt")
	}
	e.cb.status.Store(http.StatusOK)
	c := e.cb.waitAction(t, action, 6*time.Second)
	checkCallback(t, c, e.secret, action, true)
	for _, a := range e.cb.all() {
		if string(a.Body) != string(c.Body) {
			t.Errorf("a retry changed the body: %s vs %s", a.Body, c.Body)
		}
	}
}

func TestSyncAuthorizeExternalPaymentAmount(t *testing.T) {
	e := newEnv(t)
	// a split payment: the external payment's own amount_cents, not the order's total
	d := authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000)
	attrs(d)["amount_cents"] = 400
	data := assertOK(t, e.send("authorize", d), http.StatusOK)
	if got := num(t, data, "amount_cents"); got != 400 {
		t.Errorf("authorized %d, want the external payment's 400", got)
	}
	auth := str(t, data, "transaction_token")
	assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 400, 401, 400)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
	e.capture(auth, 400, 400)

	d = authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000)
	attrs(d)["amount_cents"] = -1
	assertError(t, e.send("authorize", d), http.StatusBadRequest, "invalid_amount")
}

func TestAsyncCallbackRetryBackoffConfigurable(t *testing.T) {
	dir := t.TempDir()
	cb := newRecorder(t, http.StatusServiceUnavailable)
	startCaddy(t, stdConfig(t, cfgParams{
		Storage: filepath.Join(dir, "store"), Secrets: []string{"s"}, CallbackURL: cb.URL(),
		Paybridge: "retry_backoff 50ms 100ms",
	}))
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_async_"+uid(), 1000))
	action := str(t, assertOK(t, post(t, clPath+"authorize", body, "s"), http.StatusAccepted), "action_id")
	if !waitUntil(3*time.Second, func() bool { return len(cb.all()) >= 4 }) {
		t.Fatalf("with retry_backoff 50ms 100ms, fewer than 4 attempts in 3s:%s", cb.dump())
	}
	cb.status.Store(http.StatusOK)
	checkCallback(t, cb.waitAction(t, action, 2*time.Second), "s", action, true)
}
