package payment_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// A capture the platform was told had failed, found executed at the PSP by
// verification: the money moved, so the payment's totals follow and the
// listeners hear PaymentCaptured.
func TestCaptureFoundExecutedIsToldAndCounted(t *testing.T) {
	h := newHarness(t)
	h.useListeners(nil, payment.Listener{Name: "erp"})
	a := h.authorized("x|auth", "tok_visa_4242", 1000)
	// The capture reaches the PSP, its answer is lost.
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if op.Kind == payment.Capture && op.Attempt == 1 {
			if _, err := h.sbx.Execute(ctx, op); err != nil {
				return payment.Result{}, err
			}
		}
		return payment.Result{}, &payment.Fault{Sent: true, Err: errors.New("read timeout (test)")}
	})
	r := h.do(payment.Request{Kind: payment.Capture, Key: "x|cap", Token: a.body.Token, Amount: 1000,
		Policy: payment.Policy{Deadline: 60 * time.Millisecond}})
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)
	h.reconcileAfter(hReconcile)

	p := h.payment(a.body.PaymentID)
	tx := p.Tx(r.body.Token)
	if !tx.ExecutedAnyway {
		t.Fatalf("setup: capture not found executed: %+v", tx)
	}
	if n := len(h.ledgerOps("capture")); n != 1 {
		t.Fatalf("setup: %d captures at the PSP", n)
	}
	if p.Status != payment.StatusCaptured || p.Captured != 1000 || tx.State != payment.Succeeded {
		t.Errorf("the PSP captured 1000: payment %s captured %d, transaction %s", p.Status, p.Captured, tx.State)
	}
	var types []payment.EventType
	for _, m := range h.eventMessages() {
		types = append(types, m.Type)
	}
	want := []payment.EventType{payment.PaymentAuthorized, payment.PaymentCaptureFailed, payment.PaymentCaptured}
	if !slices.Equal(types, want) {
		t.Errorf("events %v, want %v", types, want)
	}
	// The platform's retry of the capture is answered with the capture the
	// PSP made, and nothing more is captured.
	again := h.capture("x|cap", a.body.Token, 1000)
	wantStatus(t, again, 200)
	if again.body.Token != r.body.Token {
		t.Errorf("the retry was answered with %s, want the capture found executed, %s", again.body.Token, r.body.Token)
	}
	if replay := h.capture("x|cap", a.body.Token, 1000); !bytes.Equal(replay.Body, again.Body) {
		t.Errorf("the retry's repeat: %s, want %s", replay.Body, again.Body)
	}
	if n := len(h.ledgerOps("capture")); n != 1 {
		t.Errorf("%d captures at the PSP, want 1", n)
	}
}

// A revalidation of an expired authorization re-authorizes at the PSP. A
// second one while the first is in flight would make a second new
// authorization, which the payment could not keep and nobody would void:
// it is refused, and the PSP re-authorizes once.
func TestConcurrentRevalidationsReauthorizeOnce(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	pid, authTok, refusal, err := h.eng.AdoptAuthorization(ctx, payment.ExternalAuthorization{
		Platform: hPlatform, Handler: hHandler, Gateway: hGateway, GatewayKey: "tok_expired_k1",
		Amount: 1000, Currency: "EUR",
	})
	if err != nil || refusal != nil {
		t.Fatal(err, refusal)
	}
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if op.Kind == payment.Revalidate {
			arrived <- struct{}{}
			<-release
		}
		return h.sbx.Execute(ctx, op)
	})
	revalidate := func(key string) result {
		r, err := tryDo(h.eng, ctx, payment.Request{Kind: payment.Revalidate, Key: key, Token: authTok, Amount: 1000,
			Currency: "EUR", Policy: payment.Policy{Deadline: 5 * time.Second}})
		if err != nil {
			t.Error(err)
		}
		return r
	}
	first, second := make(chan result, 1), make(chan result, 1)
	go func() { first <- revalidate("reval|1") }()
	<-arrived // the first is at the PSP
	go func() { second <- revalidate("reval|2") }()
	select {
	case r := <-second:
		wantRefusal(t, r, payment.KindInvalidState, payment.CodeInvalidState)
	case <-arrived:
		close(release)
		t.Fatalf("the second revalidation reached the PSP while the first was there: %+v", <-second)
	}
	close(release)
	if r := <-first; r.Status != 200 {
		t.Fatalf("the first revalidation: %d %s", r.Status, r.Body)
	}
	p := h.payment(pid)
	var refs []string
	for _, tx := range p.Txs {
		if tx.Kind == payment.Revalidate && tx.State == payment.Succeeded {
			refs = append(refs, tx.PSPRef)
		}
	}
	if len(refs) != 1 || p.Authorization().PSPRef != refs[0] {
		t.Errorf("re-authorizations %v; the payment keeps %s", refs, p.Authorization().PSPRef)
	}
}

// Verification voids an authorization the platform was told had failed. A
// void the PSP declines leaves the customer's funds held: the transaction
// must say so, not that it was voided.
func TestVerificationVoidDeclinedIsNotVoided(t *testing.T) {
	h := newHarness(t)
	h.loseAnswers()
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_5678", Amount: 700,
		Policy: payment.Policy{Deadline: 60 * time.Millisecond}})
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if op.Kind == payment.Void {
			return payment.Result{Outcome: payment.OutcomeDeclined, Code: "void_declined"}, nil
		}
		return h.sbx.Execute(ctx, op)
	})
	h.reconcileAfter(hReconcile)
	tx := h.tx(r.body.Token)
	if tx.Verify || !strings.Contains(tx.Message, "refused to void") || strings.Contains(tx.Message, "voided") {
		t.Errorf("the PSP declined the void (the funds are still held), and the transaction says %q", tx.Message)
	}
}
