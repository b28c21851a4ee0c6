package payment_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
)

func (h *harness) openSession(key string, amount int64) string {
	h.t.Helper()
	ans, err := h.eng.Open(context.Background(), payment.OpenRequest{
		Platform: hPlatform, Handler: hHandler, Gateway: hGateway, Key: key, Amount: amount, Currency: "EUR",
		Purchase: payment.Purchase{CartID: "cart_" + key, CollectionID: "pcol_" + key},
	}, testRender)
	if err != nil {
		h.t.Fatal(err)
	}
	// testRender answers 598 for a verdict without a transaction: a session.
	if ans.Status != 598 {
		h.t.Fatalf("open: %d %s", ans.Status, ans.Body)
	}
	var b answerBody
	if err := json.Unmarshal(ans.Body, &b); err != nil {
		h.t.Fatal(err)
	}
	return b.PaymentID
}

func (h *harness) confirm(id, token string) result {
	h.t.Helper()
	return h.do(payment.Request{
		Kind: payment.Authorize, Platform: hPlatform, Handler: hHandler, Gateway: hGateway,
		Key: "confirm|" + id + "|" + token, PaymentID: id, SourceToken: token,
	})
}

func TestSessionOpenIsIdempotentAndAuthorizesOnce(t *testing.T) {
	h := newHarness(t)
	id := h.openSession("s1", 4200)
	if again := h.openSession("s1", 4200); again != id {
		t.Fatalf("the same key opened another session: %s, %s", again, id)
	}
	p := h.payment(id)
	if p.Status != payment.StatusOpen || p.Amount != 4200 || len(p.Txs) != 0 || p.Purchase.CollectionID != "pcol_s1" {
		t.Fatalf("session %+v", p)
	}

	// A decline leaves the session payable with another card.
	if r := h.confirm(id, "tok_decline_1"); r.Status != 402 {
		t.Fatalf("declined confirm: %d %s", r.Status, r.Body)
	}
	if p := h.payment(id); p.Status != payment.StatusRefused {
		t.Fatalf("status after a decline: %s", p.Status)
	}

	// Two cards at once: exactly one authorizes, the other is refused.
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i, tok := range []string{"tok_visa_a", "tok_visa_b"} {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = h.confirm(id, tok) }()
	}
	wg.Wait()
	ok, conflict := 0, 0
	for _, r := range results {
		switch r.Status {
		case http.StatusOK:
			ok++
		case http.StatusConflict:
			conflict++
		}
	}
	if ok != 1 || conflict != 1 {
		t.Fatalf("concurrent confirms: %d %s / %d %s", results[0].Status, results[0].Body, results[1].Status, results[1].Body)
	}
	p = h.payment(id)
	if p.Status != payment.StatusAuthorized || p.Authorized != 4200 || p.Authorization().State != payment.Succeeded {
		t.Fatalf("payment %+v", p)
	}
	// The ledger records what the PSP executed: the one approval (a
	// decline moves no money and leaves no line).
	if n := len(h.ledgerOps("authorize")); n != 1 {
		t.Fatalf("%d authorizations executed at the PSP, want 1", n)
	}
	// The authorization is the latest one: captures act on it.
	if r := h.capture("cap1", p.Authorization().Token, 4200); r.Status != 200 {
		t.Fatalf("capture: %d %s", r.Status, r.Body)
	}
}

func TestSessionRefusals(t *testing.T) {
	h := newHarness(t)
	if ans, err := h.eng.Open(context.Background(), payment.OpenRequest{
		Platform: hPlatform, Handler: hHandler, Gateway: hGateway, Key: "bad", Amount: 0, Currency: "EUR",
	}, testRender); err != nil || ans.Status != 400 {
		t.Fatalf("zero amount: %d %s %v", ans.Status, ans.Body, err)
	}
	if r := h.confirm("pay_unknown", "tok_visa"); r.Status != 404 {
		t.Fatalf("unknown session: %d %s", r.Status, r.Body)
	}
	id := h.openSession("s2", 100)
	r := h.do(payment.Request{Kind: payment.Authorize, Platform: hPlatform, Handler: hHandler, Gateway: "other",
		Key: "k", PaymentID: id, SourceToken: "tok_visa"})
	if r.Status != 404 {
		t.Fatalf("another gateway's session: %d %s", r.Status, r.Body)
	}
}
