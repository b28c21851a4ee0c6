package payment_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// refuseConnections: every attempt certainly does not reach the PSP.
func (h *harness) refuseConnections() {
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		return payment.Result{}, &payment.Fault{Sent: false, Err: errors.New("connection refused (test)")}
	})
}

func (h *harness) ledgerSum(op string) (n int64) {
	for _, e := range h.ledgerOps(op) {
		n += e.Amount
	}
	return n
}

var slow = payment.Policy{Deadline: 150 * time.Millisecond}

// An attempt whose answer was lost, followed by attempts that certainly did
// not reach the PSP, leaves the outcome unknown: the capture must be
// verified and its amount stay reserved, or a second capture goes through.
func TestUncertainEarlierAttemptIsRemembered(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("a", "tok_visa_4242", 1000)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if op.Attempt == 1 { // reaches the PSP, answer lost
			h.sbx.Execute(ctx, op)
			return payment.Result{}, &payment.Fault{Sent: true, Err: errors.New("read timeout")}
		}
		return payment.Result{}, &payment.Fault{Sent: false, Err: errors.New("connection refused")}
	})
	r := h.do(payment.Request{Kind: payment.Capture, Key: "c1", Token: a.body.Token, Amount: 1000, Policy: slow})
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)
	h.reconcileAfter(hReconcile)
	h.capture("c2", a.body.Token, 1000)
	if got := h.ledgerSum("capture"); got > 1000 {
		t.Fatalf("PSP captured %d of a 1000 authorization (tx1 Verify=%v)", got, h.tx(r.body.Token).Verify)
	}
}

// An orphan's first call was in flight when the process died: when the
// reconciler gives up on it, it must find out what the PSP did, and void an
// authorization that went through.
func TestOrphanGivenUpIsVerified(t *testing.T) {
	h := newHarness(t)
	p := h.plantOrphan("k", "tok_visa_1234", 1500)
	h.crashedCallReached(p)
	h.restart()
	h.refuseConnections()
	h.eng.ReconcileOnce(context.Background())
	for i := 0; i < 20; i++ {
		h.reconcileAfter(time.Minute) // past GiveUpAt (15 min)
	}
	h.gw.setExecute(nil)
	for i := 0; i < 5; i++ {
		h.reconcileAfter(time.Minute)
	}
	if tx := h.payment(p.ID).Tx("pbt_orphan"); tx.State == payment.Failed && len(h.ledgerOps("void")) == 0 {
		t.Fatalf("orphan failed (Verify=%v); the PSP authorization it made is never voided", tx.Verify)
	}
}

// A repeat of the call that itself failed did not take the first attempt's
// operation over: the first must still be verified and voided.
func TestFailedRepeatDoesNotSupersede(t *testing.T) {
	h := newHarness(t)
	req := payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_2468", Amount: 700, Policy: slow}
	h.loseAnswers()
	wantRefusal(t, h.do(req), payment.KindUnavailable, payment.CodeGatewayUnavailable) // executed, Verify
	h.refuseConnections()
	wantRefusal(t, h.do(req), payment.KindUnavailable, payment.CodeGatewayUnavailable) // plain failure
	h.gw.setExecute(nil)
	for i := 0; i < 5; i++ {
		h.reconcileAfter(time.Minute)
	}
	if len(h.ledgerOps("authorize")) == 1 && len(h.ledgerOps("void")) == 0 {
		t.Fatal("PSP holds the authorization, both payments are refused, nothing voids it")
	}
}

// Once verification has voided an authorization the platform was told had
// failed, the call's PSP key names a voided authorization: under it the PSP
// would give a repeat that authorization. The repeat is refused, and the
// PSP is not asked again.
func TestRepeatAfterVerificationVoidIsRefused(t *testing.T) {
	h := newHarness(t)
	req := payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_2468", Amount: 700, Policy: slow}
	h.loseAnswers()
	wantRefusal(t, h.do(req), payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)
	h.reconcileAfter(hReconcile)
	if len(h.ledgerOps("void")) != 1 {
		t.Fatalf("not voided: %+v", h.ledgerEntries())
	}
	calls := len(h.gw.executions(payment.Authorize))
	r := h.do(req)
	wantRefusal(t, r, payment.KindInvalidState, payment.CodeInvalidState)
	if n := len(h.gw.executions(payment.Authorize)); n != calls {
		t.Errorf("the repeat reached the PSP (%d authorize calls, %d before)", n, calls)
	}
	if n := len(h.ledgerOps("authorize")); n != 1 {
		t.Errorf("%d authorizations at the PSP, want the voided one only", n)
	}
}

// A refund of 600 whose answer was lost may have been done; a repeat of its
// key for 300 would be answered by the PSP with the 600 and booked as 300.
// It is refused, and the refunds never exceed the capture.
func TestKeyOfUncertainFailureRefusesAnotherAmount(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("a", "tok_visa_4242", 1000)
	c := h.capture("c", a.body.Token, 1000)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		h.sbx.Execute(ctx, op)
		return payment.Result{}, &payment.Fault{Sent: true, Err: errors.New("read timeout")}
	})
	wantRefusal(t, h.do(payment.Request{Kind: payment.Refund, Key: "r", Token: c.body.Token, Amount: 600, Policy: slow}),
		payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)
	r2 := h.refund("r", c.body.Token, 300) // same key: PSP replays the 600 refund
	h.reconcileAfter(hReconcile)           // first attempt "superseded": 600 released
	h.refund("r3", c.body.Token, 700)
	if got := h.ledgerSum("refund"); got > 1000 {
		t.Fatalf("PSP refunded %d of a 1000 capture (repeat answered %d %s)", got, r2.Status, r2.Body)
	}
}

// stuckGateway: the PSP accepts captures and keeps them pending.
type stuckGateway struct{ *recordingGateway }

func (g stuckGateway) Execute(ctx context.Context, op payment.Operation) (payment.Result, error) {
	res, err := g.recordingGateway.Execute(ctx, op)
	if err == nil && op.Kind == payment.Capture {
		res.Outcome = payment.OutcomePending
	}
	return res, err
}

func (g stuckGateway) Status(ctx context.Context, op payment.Operation) (payment.Result, error) {
	if op.Kind == payment.Capture {
		return payment.Result{Outcome: payment.OutcomePending}, nil
	}
	return g.recordingGateway.Status(ctx, op)
}

// A capture the PSP kept pending past MaxAge may still settle: giving up on
// verifying it must not release its amount to a second capture.
func TestOverduePendingCaptureStaysReserved(t *testing.T) {
	h := newHarness(t)
	h.eng = h.newEngine(stuckGateway{h.gw})
	a := h.authorized("a", "tok_visa_4242", 1000)
	wantStatus(t, h.capture("c1", a.body.Token, 1000), 202)
	h.reconcileAfter(73 * time.Hour) // MaxAge: failed, Verify
	h.reconcileAfter(hReconcile)     // verify gives up immediately
	if r := h.capture("c2", a.body.Token, 1000); r.Status < 300 {
		t.Fatalf("second capture of 1000 accepted (%d) while the PSP still has the first pending; ledger %+v", r.Status, h.ledgerOps("capture"))
	}
}

// A capture refused a connection, then one whose answer was lost (to be
// verified), then the platform's retry: every attempt of the call is under
// one PSP key, so the PSP captures once, and the payment says so.
func TestAttemptsOfOneCallShareTheirKey(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("a", "tok_visa_4242", 1000)
	capture := payment.Request{Kind: payment.Capture, Key: "c", Token: a.body.Token, Amount: 400, Policy: slow}
	h.refuseConnections()
	wantRefusal(t, h.do(capture), payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		h.sbx.Execute(ctx, op)
		return payment.Result{}, &payment.Fault{Sent: true, Err: errors.New("read timeout (test)")}
	})
	second := h.do(capture)
	wantRefusal(t, second, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	if !h.tx(second.body.Token).Verify {
		t.Fatal("setup: the second attempt is not being verified")
	}
	h.gw.setExecute(nil)
	wantStatus(t, h.do(capture), 200)
	h.reconcileAfter(hReconcile)
	h.reconcileAfter(hReconcile)
	p := h.payment(a.body.PaymentID)
	if got := h.ledgerSum("capture"); got != 400 || p.Captured != 400 {
		t.Fatalf("the PSP captured %d, the payment says %d; want 400", got, p.Captured)
	}
}

// The PSP refuses to void an authorization verification found made: it
// stands, so the platform's repeat of the call is given that authorization
// under the same key, not a second one.
func TestRepeatAfterVoidRefusedGetsTheStandingAuthorization(t *testing.T) {
	h := newHarness(t)
	req := payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_5678", Amount: 700,
		Policy: payment.Policy{Deadline: 60 * time.Millisecond}}
	h.loseAnswers()
	wantRefusal(t, h.do(req), payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if op.Kind == payment.Void {
			return payment.Result{Outcome: payment.OutcomeDeclined, Code: "void_declined"}, nil
		}
		return h.sbx.Execute(ctx, op)
	})
	h.reconcileAfter(hReconcile)
	wantStatus(t, h.do(req), 200)
	if auths := h.ledgerOps("authorize"); len(auths) != 1 {
		t.Fatalf("%d authorizations at the PSP, want 1: %+v", len(auths), auths)
	}
}
