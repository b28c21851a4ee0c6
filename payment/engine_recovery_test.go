package payment_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
	"github.com/paybridge/caddy-paybridge/payment"
)

// plantOrphan writes what a crash during a synchronous PSP call leaves
// behind: a payment whose authorization is Processing, and the call's
// idempotency record, not done. It returns the payment.
func (h *harness) plantOrphan(key, source string, amount int64) *payment.Payment {
	h.t.Helper()
	now := h.clock.Now()
	tx := &payment.Transaction{
		ID: "tx_orphan", Kind: payment.Authorize, Token: "pbt_orphan", Amount: amount, State: payment.Processing,
		PSPKey: "pbk_orphan", IdempotencyKey: key, Attempts: 0,
		CreatedAt: now, UpdatedAt: now, GiveUpAt: now.Add(15 * time.Minute),
	}
	p := &payment.Payment{
		ID: "pay_orphan", Platform: hPlatform, Handler: hHandler, Gateway: hGateway,
		Currency: "EUR", Amount: amount, SourceToken: source, Status: payment.StatusPending,
		Txs: []*payment.Transaction{tx}, CreatedAt: now, UpdatedAt: now,
	}
	err := h.st.Update(context.Background(), func(t payment.Tx) error {
		if err := t.PutPayment(p); err != nil {
			return err
		}
		return t.PutIdempotency(&payment.IdempotencyRecord{Key: key, PaymentID: p.ID, TxID: tx.ID, Amount: amount, CreatedAt: now})
	})
	if err != nil {
		h.t.Fatalf("planting an orphan: %v", err)
	}
	return p
}

// crashedCallReached makes the sandbox execute what the orphan p's call
// asked: the process died after the PSP acted, before recording it.
func (h *harness) crashedCallReached(p *payment.Payment) {
	h.t.Helper()
	if _, err := h.sbx.Execute(context.Background(), payment.Operation{Kind: payment.Authorize, PaymentID: p.ID, Key: "pbk_orphan",
		SourceToken: p.SourceToken, Amount: p.Amount, Currency: p.Currency, CreatedAt: p.CreatedAt, Attempt: 1}); err != nil {
		h.t.Fatalf("the crashed call at the sandbox: %v", err)
	}
}

func TestOrphanFinishedByReconcilerThenAdoptedByRepeat(t *testing.T) {
	h := newHarness(t)
	h.plantOrphan("k", "tok_visa_1234", 1500)
	h.restart()
	if !h.isOpen("pay_orphan") {
		t.Fatal("the orphan's payment is not listed as open")
	}

	h.eng.ReconcileOnce(context.Background()) // an orphan is due at once
	p := h.payment("pay_orphan")
	tx := p.Tx("pbt_orphan")
	if tx.State != payment.Succeeded || p.Status != payment.StatusAuthorized || p.Authorized != 1500 {
		t.Fatalf("after reconciling: tx %+v status %s", tx, p.Status)
	}
	if tx.PSPRef != sandbox.Ref("pbk_orphan") {
		t.Errorf("PSPRef %q", tx.PSPRef)
	}
	wantEvents(t, p, payment.PaymentAuthorized)
	if l := h.ledgerEntries(); len(l) != 1 || l[0].Key != "pbk_orphan" || l[0].Op != "authorize" {
		t.Errorf("ledger %+v", l)
	}
	h.wantMessages() // nobody was promised a callback
	if h.isOpen(p.ID) {
		t.Error("still open")
	}

	executions := h.gw.count("execute")
	// A repeat for another amount is refused, not given this payment.
	other := h.do(payment.Request{Kind: payment.Authorize, Key: "k", SourceToken: "tok_visa_1234", Amount: 9900})
	if other.Status != 400 || other.body.Code != payment.CodeIdempotencyKeyReused {
		t.Fatalf("repeat for another amount: %d %s", other.Status, other.Body)
	}
	if rec := h.record("k"); rec == nil || rec.Done {
		t.Fatalf("the refusal changed the record: %+v", rec)
	}
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "k", SourceToken: "tok_visa_1234", Amount: 1500})
	wantStatus(t, r, 200)
	if r.body.PaymentID != "pay_orphan" || r.body.Token != "pbt_orphan" || r.body.State != string(payment.Succeeded) {
		t.Fatalf("adopted answer %s", r.Body)
	}
	if h.gw.count("execute") != executions {
		t.Error("the repeat of a finished orphan called the PSP")
	}
	rec := h.record("k")
	if rec == nil || !rec.Done || !bytes.Equal(rec.Answer.Body, r.Body) {
		t.Fatalf("record after adoption %+v", rec)
	}
	if again := h.do(payment.Request{Kind: payment.Authorize, Key: "k", SourceToken: "tok_visa_1234", Amount: 1500}); !bytes.Equal(again.Body, r.Body) {
		t.Errorf("replay %s, first %s", again.Body, r.Body)
	}
	// Still one payment, one transaction.
	if p := h.payment("pay_orphan"); len(p.Txs) != 1 {
		t.Errorf("%d transactions", len(p.Txs))
	}
}

func TestOrphanAdoptedAsyncThenSettledWithCallback(t *testing.T) {
	h := newHarness(t)
	h.plantOrphan("k", "tok_visa_1234", 1500)
	h.restart()
	req := payment.Request{Kind: payment.Authorize, Key: "k", SourceToken: "tok_visa_1234", Amount: 1500,
		Policy: payment.Policy{Async: true, Deadline: 50 * time.Millisecond}}
	r := h.do(req)
	wantStatus(t, r, 202)
	if r.body.Token != "pbt_orphan" || r.body.ActionID == "" || r.body.State != string(payment.Retrying) {
		t.Fatalf("adopted answer %s", r.Body)
	}
	if rec := h.record("k"); rec == nil || !rec.Done || !bytes.Equal(rec.Answer.Body, r.Body) {
		t.Fatalf("record %+v", rec)
	}
	h.eng.ReconcileOnce(context.Background())
	p := h.payment("pay_orphan")
	tx := p.Tx("pbt_orphan")
	if tx.State != payment.Succeeded {
		t.Fatalf("tx %+v", tx)
	}
	h.wantMessages(testNotifier(p, tx))
	if again := h.do(req); !bytes.Equal(again.Body, r.Body) {
		t.Errorf("replay %s, first %s", again.Body, r.Body)
	}
}

// A synchronous repeat of an orphan's call is answered "unavailable", and
// the orphan's PSP outcome is verified and undone.
func TestOrphanAdoptedSyncFailsAndIsVerified(t *testing.T) {
	for _, reached := range []bool{true, false} {
		t.Run(fmt.Sprintf("the crashed call reached the PSP: %v", reached), func(t *testing.T) {
			testOrphanAdoptedSyncFailsAndIsVerified(t, reached)
		})
	}
}

func testOrphanAdoptedSyncFailsAndIsVerified(t *testing.T, reached bool) {
	h := newHarness(t)
	p := h.plantOrphan("k", "tok_visa_1234", 1500)
	if reached {
		h.crashedCallReached(p)
	}
	h.restart()
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "k", SourceToken: "tok_visa_1234", Amount: 1500})
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	if r.body.Token != "pbt_orphan" {
		t.Errorf("answer %s", r.Body)
	}
	if rec := h.record("k"); rec != nil {
		t.Errorf("a failure left a record %+v", rec)
	}
	tx := h.tx("pbt_orphan")
	if tx.State != payment.Failed || !tx.Verify {
		t.Fatalf("tx %+v", tx)
	}
	h.reconcileAfter(hReconcile)
	tx = h.tx("pbt_orphan")
	if tx.Verify {
		t.Fatalf("still to verify: %+v", tx)
	}
	// An authorization the PSP made is voided; one it never made is not.
	voids := h.ledgerOps("void")
	switch {
	case reached && (len(voids) != 1 || voids[0].Key != "pbk_orphan_void" || voids[0].Amount != 1500):
		t.Errorf("void ledger lines %+v, want the orphan's authorization voided", voids)
	case !reached && len(voids) != 0:
		t.Errorf("void ledger lines %+v, want none: the PSP never authorized", voids)
	}
}

// A real crash: the process dies while the PSP call is in flight (here, its
// store is closed under it, so the first engine can record nothing), and a
// new process over the same storage finishes the work.
func TestCrashDuringPSPCallIsFinishedAfterRestart(t *testing.T) {
	h := newHarness(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		once.Do(func() { close(entered) })
		select {
		case <-release:
		case <-ctx.Done():
		}
		return payment.Result{}, &payment.Fault{Sent: true, Err: errors.New("connection reset (test)")}
	})
	oldEngine := h.eng
	done := make(chan error, 1)
	go func() {
		_, err := tryDo(oldEngine, context.Background(), payment.Request{Kind: payment.Authorize, Key: "k", SourceToken: "tok_visa_4321", Amount: 999,
			Policy: payment.Policy{Deadline: 300 * time.Millisecond}})
		done <- err
	}()
	<-entered
	h.restart() // the old engine's store is gone: it can acknowledge nothing
	close(release)
	if err := <-done; err == nil {
		t.Fatal("the crashed engine acknowledged the call")
	}

	rec := h.record("k")
	if rec == nil || rec.Done {
		t.Fatalf("record after the crash %+v", rec)
	}
	h.eng.ReconcileOnce(context.Background())
	p := h.payment(rec.PaymentID)
	if tx := p.TxByID(rec.TxID); tx == nil || tx.State != payment.Succeeded {
		t.Fatalf("orphan after reconciling: %+v", tx)
	}
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "k", SourceToken: "tok_visa_4321", Amount: 999})
	wantStatus(t, r, 200)
	if r.body.PaymentID != p.ID {
		t.Errorf("adopted answer names payment %q, want %q", r.body.PaymentID, p.ID)
	}
	if l := h.ledgerOps("authorize"); len(l) != 1 {
		t.Errorf("authorize ledger lines %+v", l)
	}
}

func TestPendingSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	r := h.authorize("a", "tok_async_9", 2000)
	wantStatus(t, r, 202)
	h.restart()
	h.reconcileAfter(hAsync)
	p := h.payment(r.body.PaymentID)
	tx := p.Tx(r.body.Token)
	if tx.State != payment.Succeeded || p.Authorized != 2000 {
		t.Fatalf("after restart: tx %+v", tx)
	}
	h.wantMessages(testNotifier(p, tx))
	if again := h.authorize("a", "tok_async_9", 2000); !bytes.Equal(again.Body, r.Body) {
		t.Errorf("replay after restart %s, first %s", again.Body, r.Body)
	}
}

func TestRetryingSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_outage_9", Amount: 2000,
		Policy: payment.Policy{Async: true, Deadline: 50 * time.Millisecond}})
	wantStatus(t, r, 202)
	h.restart()
	h.reconcileAfter(hReconcile + time.Millisecond) // still in the outage
	if tx := h.tx(r.body.Token); tx.State != payment.Retrying {
		t.Fatalf("state %s", tx.State)
	}
	h.restart()
	h.reconcileAfter(hOutage)
	p := h.payment(r.body.PaymentID)
	tx := p.Tx(r.body.Token)
	if tx.State != payment.Succeeded {
		t.Fatalf("after the outage: %+v", tx)
	}
	h.wantMessages(testNotifier(p, tx))
	if l := h.ledgerEntries(); len(l) != 1 {
		t.Errorf("ledger %+v", l)
	}
}

// loseAnswers makes the gateway execute authorizations at the sandbox on
// their first attempt but lose every answer, as a connection cut after the
// request went out would.
func (h *harness) loseAnswers() {
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if op.Attempt == 1 {
			if _, err := h.sbx.Execute(ctx, op); err != nil {
				return payment.Result{}, err
			}
		}
		return payment.Result{}, &payment.Fault{Sent: true, Err: errors.New("read timeout (test)")}
	})
}

func TestVerifyVoidsAuthorizationToldFailed(t *testing.T) {
	h := newHarness(t)
	h.loseAnswers()
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_5678", Amount: 700,
		Policy: payment.Policy{Deadline: 60 * time.Millisecond}})
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	tx := h.tx(r.body.Token)
	if tx.State != payment.Failed || !tx.Verify {
		t.Fatalf("tx %+v: a failure whose outcome is unknown must be verified", tx)
	}
	if !h.isOpen(r.body.PaymentID) {
		t.Fatal("a transaction to verify is not listed as open")
	}
	h.gw.setExecute(nil)

	h.reconcileAfter(hReconcile)
	p := h.payment(r.body.PaymentID)
	tx = p.Tx(r.body.Token)
	if tx.Verify || tx.State != payment.Failed || p.Status != payment.StatusRefused {
		t.Fatalf("after verifying: tx %+v status %s", tx, p.Status)
	}
	if !strings.Contains(tx.Message, "voided") {
		t.Errorf("message %q", tx.Message)
	}
	voids := h.gw.executions(payment.Void)
	if len(voids) != 1 || voids[0].Key != tx.PSPKey+"_void" || voids[0].Ref != sandbox.Ref(tx.PSPKey) || voids[0].Amount != 700 {
		t.Fatalf("void executions %+v", voids)
	}
	if l := h.ledgerOps("void"); len(l) != 1 || l[0].Key != tx.PSPKey+"_void" {
		t.Errorf("void ledger lines %+v", l)
	}
	if h.isOpen(p.ID) {
		t.Error("still open after verification")
	}
	h.wantMessages()
	// Nothing more happens later.
	h.reconcileAfter(time.Hour)
	if n := len(h.gw.executions(payment.Void)); n != 1 {
		t.Errorf("%d voids", n)
	}
}

func TestVerifyLeavesDeclinedAlone(t *testing.T) {
	h := newHarness(t)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		return payment.Result{}, &payment.Fault{Sent: true, Err: errors.New("read timeout (test)")}
	})
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_decline_1", Amount: 700,
		Policy: payment.Policy{Deadline: 60 * time.Millisecond}})
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)
	h.reconcileAfter(hReconcile)
	tx := h.tx(r.body.Token)
	if tx.Verify {
		t.Fatalf("still to verify: %+v", tx)
	}
	if n := len(h.gw.executions(payment.Void)); n != 0 {
		t.Errorf("%d voids of a declined authorization", n)
	}
}

// The PSP idempotency key is shared on purpose by a call's repeated
// attempts, so a repeat after an unknown outcome reaches the authorization
// the first attempt made. Verifying the first attempt must then not void
// that authorization at the PSP: the repeat was told it succeeded.
func TestVerifyDoesNotVoidTheAuthorizationOfASuccessfulRepeat(t *testing.T) {
	h := newHarness(t)
	h.loseAnswers()
	req := payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_2468", Amount: 700,
		Policy: payment.Policy{Deadline: 60 * time.Millisecond}}
	first := h.do(req)
	wantRefusal(t, first, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)

	second, err := tryDo(h.eng, context.Background(), req)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	wantStatus(t, second, 200)
	p2 := h.payment(second.body.PaymentID)
	auth := p2.Authorization()
	if auth.PSPKey != h.tx(first.body.Token).PSPKey {
		t.Fatalf("the repeat used PSP key %q, the first attempt %q", auth.PSPKey, h.tx(first.body.Token).PSPKey)
	}

	h.reconcileAfter(hReconcile)
	for _, op := range h.gw.executions(payment.Void) {
		if op.Ref == auth.PSPRef {
			t.Errorf("the reconciler voided PSP authorization %s (key %s) while payment %s, answered 200, relies on it",
				op.Ref, op.Key, p2.ID)
		}
	}
	if p := h.payment(p2.ID); p.Status != payment.StatusAuthorized {
		t.Errorf("status %s", p.Status)
	}
	// PSP events name operations by key: the key must lead to the payment
	// that holds the live authorization.
	if id, err := h.eng.PaymentByToken(context.Background(), auth.PSPKey); err != nil || id != p2.ID {
		t.Errorf("the shared PSP key resolves to %q (%v), want the repeat's payment %q", id, err, p2.ID)
	}
}

// Execute's comment: "The client's going away does not cut it short: the
// outcome must be recorded either way." A request whose context is
// cancelled while the PSP executes must still have its outcome recorded,
// or the PSP's charge is unknown here and executed a second time.
func TestClientGoneDuringPSPCallStillRecordsOutcome(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.gw.setExecute(func(c context.Context, op payment.Operation) (payment.Result, error) {
		res, err := h.sbx.Execute(c, op)
		cancel() // the platform hangs up while the PSP answers
		return res, err
	})
	_, err := tryDo(h.eng, ctx, payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_1357", Amount: 640})
	if err != nil {
		t.Errorf("Do with the client gone after the PSP executed: %v (the PSP charged; this reads as \"nothing was done\")", err)
	}
	h.gw.setExecute(nil)
	ops := h.gw.executions(payment.Authorize)
	if len(ops) == 0 {
		t.Fatal("no execution")
	}
	key := ops[0].Key
	id, err := h.eng.PaymentByToken(context.Background(), key)
	if err != nil {
		t.Fatalf("no payment for the PSP key: %v", err)
	}
	if tx := h.payment(id).Authorization(); tx.State != payment.Succeeded {
		t.Errorf("authorization %s after the PSP succeeded", tx.State)
	}
	h.eng.ReconcileOnce(context.Background())
	if l := h.ledgerOps("authorize"); len(l) != 1 {
		t.Errorf("the PSP executed the authorization %d times: %+v", len(l), l)
	}
}

// A refund whose answer was lost is told to the platform as failed, but
// the PSP may have executed it: until verification says it did not, and
// for good if it did, its amount stays reserved, so a retried refund (a
// platform like Openfront sends no key of its own) cannot take the same
// balance again and refund more than was captured.
func TestRefundToldFailedKeepsItsAmountReserved(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("a", "tok_visa_4242", 1000)
	c := h.capture("c", a.body.Token, 1000)
	wantStatus(t, c, 200)
	h.loseAnswers()
	r := h.do(payment.Request{Kind: payment.Refund, Key: "r1", Token: c.body.Token, Amount: 600,
		Policy: payment.Policy{Deadline: 60 * time.Millisecond}})
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)
	if tx := h.tx(r.body.Token); tx.State != payment.Failed || !tx.Verify {
		t.Fatalf("tx %+v: a failure whose outcome is unknown must be verified", tx)
	}
	wantRefusal(t, h.refund("r2", c.body.Token, 600), payment.KindExceedsBalance, payment.CodeExceedsBalance)

	h.reconcileAfter(hReconcile)
	tx := h.tx(r.body.Token)
	if tx.Verify || !tx.ExecutedAnyway {
		t.Fatalf("after verifying: %+v, want it found executed at the PSP", tx)
	}
	wantRefusal(t, h.refund("r3", c.body.Token, 600), payment.KindExceedsBalance, payment.CodeExceedsBalance)
	wantStatus(t, h.refund("r4", c.body.Token, 400), 200)
	if l := h.ledgerOps("refund"); len(l) != 2 {
		t.Errorf("%d refunds executed at the PSP, want 2 (600 lost, then 400): %+v", len(l), l)
	}
}

// A capture whose answer was lost and that the PSP turns out not to have
// executed (the sandbox declines every capture of tok_capture_fail)
// releases its amount once verified.
func TestCaptureToldFailedIsReleasedWhenNotExecuted(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("a", "tok_capture_fail_1", 1000)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		return payment.Result{}, &payment.Fault{Sent: true, Err: errors.New("read timeout (test)")}
	})
	r := h.do(payment.Request{Kind: payment.Capture, Key: "c1", Token: a.body.Token, Amount: 1000,
		Policy: payment.Policy{Deadline: 60 * time.Millisecond}})
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)
	wantRefusal(t, h.capture("c2", a.body.Token, 1000), payment.KindExceedsBalance, payment.CodeExceedsBalance)
	h.reconcileAfter(hReconcile)
	if tx := h.tx(r.body.Token); tx.Verify || tx.ExecutedAnyway {
		t.Fatalf("after verifying: %+v, want it released", tx)
	}
	// The balance is free again: the next capture reaches the PSP (which
	// declines it) instead of being refused for the balance.
	wantRefusal(t, h.capture("c3", a.body.Token, 1000), payment.KindDeclined, "capture_declined")
}
