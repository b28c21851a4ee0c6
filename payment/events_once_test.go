package payment_test

import (
	"context"
	"errors"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
)

func TestCaptureStartedOncePerTransaction(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("dup|auth", "tok_visa_4242", 1000)
	// capture A: the PSP cannot be reached -> Retrying (async policy)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if op.Kind == payment.Capture && op.Amount == 400 {
			return payment.Result{}, &payment.Fault{Sent: false, Err: errors.New("down")}
		}
		return h.sbx.Execute(ctx, op)
	})
	ra := h.do(payment.Request{Kind: payment.Capture, Key: "dup|capA", Token: a.body.Token, Amount: 400, Policy: payment.Policy{Async: true}})
	t.Logf("A: %d %s", ra.Status, ra.Body)
	// capture B succeeds
	rb := h.capture("dup|capB", a.body.Token, 300)
	t.Logf("B: %d %s", rb.Status, rb.Body)
	// the PSP is back and keeps A pending
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if op.Kind == payment.Capture && op.Amount == 400 {
			return payment.Result{Outcome: payment.OutcomePending, Ref: "sbx_A"}, nil
		}
		return h.sbx.Execute(ctx, op)
	})
	h.reconcileAfter(2 * hReconcile)
	p := h.paymentOf(a.body.Token)
	for _, e := range p.Events {
		t.Logf("event %d %s tx %s", e.Sequence, e.Type, e.TxID)
	}
	wantEvents(t, p, payment.PaymentAuthorized, payment.PaymentCaptureStarted, payment.PaymentCaptured)
}
