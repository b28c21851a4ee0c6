package caddymodule

import (
	"bytes"
	"net/http"
	"sync"
	"testing"
	"time"
)

// sameAnswer fails unless b repeats a byte for byte.
func sameAnswer(t *testing.T, what string, a, b response) {
	t.Helper()
	if a.Status != b.Status || !bytes.Equal(a.Body, b.Body) {
		t.Errorf("%s: repeat answered differently:\n first %s\nrepeat %s", what, a, b)
	}
}

func TestIdempotentRepeats(t *testing.T) {
	e := newEnv(t)

	authBody := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))
	a1 := post(t, clPath+"authorize", authBody, e.secret)
	auth := str(t, assertOK(t, a1, http.StatusOK), "transaction_token")
	sameAnswer(t, "authorize", a1, post(t, clPath+"authorize", authBody, e.secret))

	capDoc := captureDoc("au_"+uid(), auth, 1000, 400, 1000)
	capBody := mustJSON(t, capDoc)
	c1 := post(t, clPath+"capture", capBody, e.secret)
	capt := str(t, assertOK(t, c1, http.StatusOK), "transaction_token")
	sameAnswer(t, "capture", c1, post(t, clPath+"capture", capBody, e.secret))
	// a redelivery differs only in its timestamps (and so its signature)
	attrs(capDoc)["updated_at"] = "2026-02-03T04:05:06.000Z"
	attrs(capDoc)["created_at"] = "2026-02-03T04:05:06.000Z"
	sameAnswer(t, "capture with new timestamps", c1, e.send("capture", capDoc))
	// the second secret signs a repeat just as well
	sameAnswer(t, "capture signed with the second secret", c1, post(t, clPath+"capture", capBody, "secret-two"))

	refBody := mustJSON(t, refundDoc("ca_"+uid(), capt, 400, 150, 400))
	r1 := post(t, clPath+"refund", refBody, e.secret)
	assertOK(t, r1, http.StatusOK)
	sameAnswer(t, "refund", r1, post(t, clPath+"refund", refBody, e.secret))

	auth2 := e.authorize("tok_visa_"+uid(), 700)
	voidBody := mustJSON(t, voidDoc("au_"+uid(), auth2, 700))
	v1 := post(t, clPath+"void", voidBody, e.secret)
	assertOK(t, v1, http.StatusOK)
	sameAnswer(t, "void", v1, post(t, clPath+"void", voidBody, e.secret))

	tokBody := mustJSON(t, tokenDoc("ep_"+uid(), "tok_visa_"+uid()))
	k1 := post(t, clPath+"token", tokBody, e.secret)
	assertOK(t, k1, http.StatusOK)
	sameAnswer(t, "token", k1, post(t, clPath+"token", tokBody, e.secret))

	// an async answer is replayed too, also after the operation settled
	asyncBody := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_async_"+uid(), 300))
	p1 := post(t, clPath+"authorize", asyncBody, e.secret)
	action := str(t, assertOK(t, p1, http.StatusAccepted), "action_id")
	sameAnswer(t, "pending authorize", p1, post(t, clPath+"authorize", asyncBody, e.secret))
	e.cb.waitAction(t, action, 5*time.Second)
	sameAnswer(t, "settled authorize", p1, post(t, clPath+"authorize", asyncBody, e.secret))

	// the same call on another handler is another call
	other := post(t, failPath+"authorize", authBody, e.secret)
	if tok := str(t, assertOK(t, other, http.StatusOK), "transaction_token"); tok == auth {
		t.Errorf("a call to another handler was answered from the first handler's record")
	}

	entries := readLedger(t, e.ledger)
	ledgerKeysUnique(t, entries)
	ops := countOps(entries)
	if ops["authorize"] != 4 || ops["capture"] != 1 || ops["refund"] != 1 || ops["void"] != 1 || ops["vault"] != 1 {
		t.Errorf("ledger %v, want authorize 4 (2 + async + other handler), capture 1, refund 1, void 1, vault 1", ops)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(e.cb.delivered()); n != 1 {
		t.Errorf("%d callbacks, want 1:%s", n, e.cb.dump())
	}
}

// concurrently sends body n times at the same moment.
// The natural key covers data.attributes, not the included order, so an
// external payment sent again with another order total has the same key:
// it is refused in Commerce Layer's error format, and the first
// authorization is neither replayed as if it were for the new total nor
// joined by a second one.
func TestIdempotentKeyWithAnotherAmountRefused(t *testing.T) {
	e := newEnv(t)
	id, source := "ep_"+uid(), "tok_visa_"+uid()
	first := e.send("authorize", authorizeDoc(id, source, 1000))
	assertOK(t, first, http.StatusOK)
	changed := authorizeDoc(id, source, 1000)
	orderAttrs(changed)["total_amount_with_taxes_cents"] = 1500
	assertError(t, e.send("authorize", changed), http.StatusBadRequest, "idempotency_key_reused")
	sameAnswer(t, "the first authorize", first, e.send("authorize", authorizeDoc(id, source, 1000)))
}

func concurrently(t *testing.T, n int, path string, bodies func(i int) []byte, secret string) []response {
	t.Helper()
	out := make([]response, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := bodies(i)
			<-start
			out[i], errs[i] = tryDo(http.MethodPost, path, body, map[string]string{"X-CommerceLayer-Signature": clSign(secret, body)})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	return out
}

func TestIdempotentConcurrentDuplicates(t *testing.T) {
	e := newEnv(t)
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))
	rs := concurrently(t, 10, clPath+"authorize", func(int) []byte { return body }, e.secret)
	assertOK(t, rs[0], http.StatusOK)
	for i := 1; i < len(rs); i++ {
		sameAnswer(t, "concurrent authorize", rs[0], rs[i])
	}
	auth := str(t, assertOK(t, rs[0], http.StatusOK), "transaction_token")

	capBody := mustJSON(t, captureDoc("au_"+uid(), auth, 1000, 250, 1000))
	cs := concurrently(t, 10, clPath+"capture", func(int) []byte { return capBody }, e.secret)
	for i := 1; i < len(cs); i++ {
		sameAnswer(t, "concurrent capture", cs[0], cs[i])
	}
	assertOK(t, cs[0], http.StatusOK)

	entries := readLedger(t, e.ledger)
	ledgerKeysUnique(t, entries)
	if ops := countOps(entries); ops["authorize"] != 1 || ops["capture"] != 1 {
		t.Errorf("ledger %v, want one authorize and one capture", ops)
	}
	// 250 of 1000 is held by the one capture: 750 is left
	assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 751, 750)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
	e.capture(auth, 1000, 750)
}

func TestIdempotentDeclineIsNotReplayed(t *testing.T) {
	e := newEnv(t)
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_decline_"+uid(), 1000))
	r1 := post(t, clPath+"authorize", body, e.secret)
	r2 := post(t, clPath+"authorize", body, e.secret)
	assertError(t, r1, http.StatusUnprocessableEntity, "card_declined")
	assertError(t, r2, http.StatusUnprocessableEntity, "card_declined")
	// a new attempt makes a new transaction; a replay would repeat the first
	tok := func(r response) string {
		t.Helper()
		d, ok := decodeJSON(t, r.Body)["data"].(map[string]any)
		if !ok {
			t.Fatalf("a decline without data.transaction_token: %s", r.Body)
		}
		return str(t, d, "transaction_token")
	}
	if t1, t2 := tok(r1), tok(r2); t1 == t2 {
		t.Errorf("the repeat of a declined call was replayed (same transaction token %s)", t1)
	}

	// a declined capture repeated is a new attempt too, and still declined
	auth := e.authorize("tok_capture_fail_"+uid(), 1000)
	capBody := mustJSON(t, captureDoc("au_"+uid(), auth, 1000, 1000, 1000))
	c1 := post(t, clPath+"capture", capBody, e.secret)
	c2 := post(t, clPath+"capture", capBody, e.secret)
	assertError(t, c1, http.StatusUnprocessableEntity, "capture_declined")
	assertError(t, c2, http.StatusUnprocessableEntity, "capture_declined")
	if t1, t2 := tok(c1), tok(c2); t1 == t2 {
		t.Errorf("the repeat of a declined capture was replayed (same transaction token %s)", t1)
	}

	// a refusal by the rules is not remembered either: once the state
	// allows it, the same call succeeds
	auth2 := e.authorize("tok_visa_"+uid(), 1000)
	capt := e.capture(auth2, 1000, 500)
	refBody := mustJSON(t, refundDoc("ca_"+uid(), capt, 500, 600, 500))
	assertError(t, post(t, clPath+"refund", refBody, e.secret), http.StatusUnprocessableEntity, "amount_exceeds_balance")
	assertError(t, post(t, clPath+"refund", refBody, e.secret), http.StatusUnprocessableEntity, "amount_exceeds_balance")
}

func TestIdempotentFlakyRetriedWithinRequest(t *testing.T) {
	e := newEnv(t)
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_flaky_"+uid(), 1000))
	r := post(t, failPath+"authorize", body, e.secret) // unavailable fail: no 202 escape
	auth := str(t, assertOK(t, r, http.StatusOK), "transaction_token")
	sameAnswer(t, "flaky authorize", r, post(t, failPath+"authorize", body, e.secret))
	r = post(t, failPath+"capture", mustJSON(t, captureDoc("au_"+uid(), auth, 1000, 1000, 1000)), e.secret)
	assertOK(t, r, http.StatusOK)
	entries := readLedger(t, e.ledger)
	ledgerKeysUnique(t, entries)
	if ops := countOps(entries); ops["authorize"] != 1 || ops["capture"] != 1 {
		t.Errorf("ledger %v, want one authorize and one capture", ops)
	}
}

// --- races ------------------------------------------------------------------

func TestRaceConcurrentPartialCaptures(t *testing.T) {
	e := newEnv(t)
	auth := e.authorize("tok_visa_"+uid(), 1000)
	authID := "au_" + uid()
	rs := concurrently(t, 20, clPath+"capture", func(i int) []byte {
		d := captureDoc(authID, auth, 1000, 100, 1000)
		attrs(d)["metadata"] = map[string]any{"attempt": i} // distinct calls
		return mustJSON(t, d)
	}, e.secret)
	ok, over := 0, 0
	for _, r := range rs {
		switch r.Status {
		case http.StatusOK:
			ok++
		case http.StatusUnprocessableEntity:
			assertError(t, r, http.StatusUnprocessableEntity, "amount_exceeds_balance")
			over++
		default:
			t.Errorf("unexpected answer %s", r)
		}
	}
	if ok != 10 || over != 10 {
		t.Errorf("%d captured, %d refused; want 10 and 10", ok, over)
	}
	entries := readLedger(t, e.ledger)
	ledgerKeysUnique(t, entries)
	if ops := countOps(entries); ops["capture"] != ok || ops["authorize"] != 1 {
		t.Errorf("ledger %v, want %d captures", ops, ok)
	}
	assertError(t, e.send("capture", captureDoc(authID, auth, 1000, 1, 0)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
}

func TestRaceConcurrentRefunds(t *testing.T) {
	e := newEnv(t)
	auth := e.authorize("tok_visa_"+uid(), 1000)
	capt := e.capture(auth, 1000, 1000)
	capID := "ca_" + uid()
	rs := concurrently(t, 15, clPath+"refund", func(i int) []byte {
		d := refundDoc(capID, capt, 1000, 100, 1000)
		attrs(d)["metadata"] = map[string]any{"attempt": i}
		return mustJSON(t, d)
	}, e.secret)
	ok, over := 0, 0
	for _, r := range rs {
		switch r.Status {
		case http.StatusOK:
			ok++
		case http.StatusUnprocessableEntity:
			assertError(t, r, http.StatusUnprocessableEntity, "amount_exceeds_balance")
			over++
		default:
			t.Errorf("unexpected answer %s", r)
		}
	}
	if ok != 10 || over != 5 {
		t.Errorf("%d refunded, %d refused; want 10 and 5", ok, over)
	}
	entries := readLedger(t, e.ledger)
	ledgerKeysUnique(t, entries)
	if ops := countOps(entries); ops["refund"] != ok {
		t.Errorf("ledger %v, want %d refunds", ops, ok)
	}
}

func TestRaceCaptureAgainstVoid(t *testing.T) {
	e := newEnv(t)
	for range 5 {
		auth := e.authorize("tok_visa_"+uid(), 1000)
		bodies := [][]byte{
			mustJSON(t, captureDoc("au_"+uid(), auth, 1000, 1000, 1000)),
			mustJSON(t, voidDoc("au_"+uid(), auth, 1000)),
		}
		paths := []string{clPath + "capture", clPath + "void"}
		var wg sync.WaitGroup
		out := make([]response, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := tryDo(http.MethodPost, paths[i], bodies[i], map[string]string{"X-CommerceLayer-Signature": clSign(e.secret, bodies[i])})
				if err != nil {
					t.Error(err)
				}
				out[i] = r
			}()
		}
		close(start)
		wg.Wait()
		if (out[0].Status == http.StatusOK) == (out[1].Status == http.StatusOK) {
			t.Errorf("capture %s and void %s: want exactly one to succeed", out[0], out[1])
		}
		for _, r := range out {
			if r.Status != http.StatusOK {
				assertError(t, r, http.StatusConflict, "invalid_state")
			}
		}
	}
}
