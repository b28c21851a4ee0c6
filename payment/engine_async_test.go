package payment_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
	"github.com/paybridge/caddy-paybridge/payment"
)

// notificationFor is what testNotifier renders for the transaction with
// token, read back from the store.
func (h *harness) notificationFor(token string) []byte {
	h.t.Helper()
	p := h.paymentOf(token)
	return testNotifier(p, p.Tx(token))
}

func TestAsyncAuthorizeSucceedsAndNotifiesOnce(t *testing.T) {
	h := newHarness(t)
	r := h.authorize("a", "tok_async_1", 3000)
	wantStatus(t, r, 202)
	if r.body.State != string(payment.Pending) || r.body.Code != "" {
		t.Fatalf("answer %s", r.Body)
	}
	hasPrefix(t, "action id", r.body.ActionID, "pba_")
	tx := h.tx(r.body.Token)
	if !tx.Notify || tx.ActionID != r.body.ActionID || tx.NextCheck.IsZero() {
		t.Errorf("pending transaction %+v", tx)
	}
	p := h.payment(r.body.PaymentID)
	if p.Status != payment.StatusPending || p.Authorized != 0 {
		t.Errorf("status %s authorized %d", p.Status, p.Authorized)
	}
	wantEvents(t, p, payment.PaymentReceived)
	if !h.isOpen(p.ID) {
		t.Fatal("a pending payment is not listed as open")
	}
	if id, err := h.eng.PaymentByToken(context.Background(), r.body.ActionID); err != nil || id != p.ID {
		t.Errorf("the action id resolves to %q, %v", id, err)
	}
	h.wantMessages()
	// A repeat while pending gets the 202 again.
	if again := h.authorize("a", "tok_async_1", 3000); again.Status != 202 || !bytes.Equal(again.Body, r.Body) {
		t.Errorf("replay %d %s", again.Status, again.Body)
	}

	// Before the delay is over the PSP still says pending.
	h.reconcileAfter(hReconcile)
	if tx := h.tx(r.body.Token); tx.State != payment.Pending {
		t.Fatalf("state %s before the async delay", tx.State)
	}
	h.wantMessages()

	h.reconcileAfter(hAsync)
	p = h.payment(r.body.PaymentID)
	tx = p.Tx(r.body.Token)
	if tx.State != payment.Succeeded || tx.Notify || p.Status != payment.StatusAuthorized || p.Authorized != 3000 {
		t.Fatalf("after the delay: tx %+v, payment status %s authorized %d", tx, p.Status, p.Authorized)
	}
	wantEvents(t, p, payment.PaymentReceived, payment.PaymentAuthorized)
	body := testNotifier(p, tx)
	ms := h.wantMessages(body)
	if ms[0].PaymentID != p.ID {
		t.Errorf("message for payment %q", ms[0].PaymentID)
	}
	if h.isOpen(p.ID) {
		t.Error("a settled payment is still open")
	}
	// Later passes send nothing more.
	h.reconcileAfter(time.Minute)
	h.wantMessages(body)
	if n := len(h.ledgerOps("authorize")); n != 1 {
		t.Errorf("%d authorize ledger lines", n)
	}
	// The authorization is usable.
	wantStatus(t, h.capture("c", r.body.Token, 0+3000), 202) // tok_async: the capture too goes pending
}

func TestAsyncDeclineFailsAndNotifies(t *testing.T) {
	h := newHarness(t)
	r := h.authorize("a", "tok_async_decline_7f3a", 3000)
	wantStatus(t, r, 202)
	h.reconcileAfter(hAsync)
	p := h.payment(r.body.PaymentID)
	tx := p.Tx(r.body.Token)
	if tx.State != payment.Failed || tx.Code != sandbox.CodeCardDeclined || p.Status != payment.StatusRefused {
		t.Fatalf("tx %+v status %s", tx, p.Status)
	}
	wantEvents(t, p, payment.PaymentReceived, payment.PaymentRefused)
	body := testNotifier(p, tx)
	if !bytes.Contains(body, []byte(`"state":"failed","code":"card_declined"`)) {
		t.Fatalf("notifier body %s", body)
	}
	h.wantMessages(body)
	if h.isOpen(p.ID) {
		t.Error("a declined payment is still open")
	}
	// The platform was answered 202: that answer stays the answer.
	if again := h.authorize("a", "tok_async_decline_7f3a", 3000); !bytes.Equal(again.Body, r.Body) {
		t.Errorf("replay %s, first %s", again.Body, r.Body)
	}
}

func TestThreeDSAuthorize(t *testing.T) {
	h := newHarness(t)
	r := h.authorize("a", "tok_3ds_1", 3000)
	wantStatus(t, r, 202)
	if tx := h.tx(r.body.Token); !tx.AuthRequired {
		t.Errorf("AuthRequired not recorded: %+v", tx)
	}
	wantEvents(t, h.payment(r.body.PaymentID), payment.PaymentAuthenticationStarted)
	h.reconcileAfter(hAsync)
	p := h.payment(r.body.PaymentID)
	wantEvents(t, p, payment.PaymentAuthenticationStarted, payment.PaymentAuthorized)
	h.wantMessages(testNotifier(p, p.Tx(r.body.Token)))
}

func TestAsyncCaptureRefundAndVoid(t *testing.T) {
	h := newHarness(t)
	a := h.authorize("a", "tok_async_2", 1000)
	h.reconcileAfter(hAsync)
	authNote := h.notificationFor(a.body.Token)
	h.wantMessages(authNote)

	c := h.capture("c", a.body.Token, 600)
	wantStatus(t, c, 202)
	if c.body.ActionID == "" || c.body.ActionID == a.body.ActionID {
		t.Fatalf("capture answer %s", c.Body)
	}
	p := h.payment(a.body.PaymentID)
	if p.Captured != 0 || p.Status != payment.StatusAuthorized {
		t.Errorf("pending capture counted: captured %d status %s", p.Captured, p.Status)
	}
	wantEvents(t, p, payment.PaymentReceived, payment.PaymentAuthorized, payment.PaymentCaptureStarted)
	// The pending capture reserves its amount, and forbids a void.
	wantRefusal(t, h.capture("c-over", a.body.Token, 401), payment.KindExceedsBalance, payment.CodeExceedsBalance)
	wantRefusal(t, h.void("v", a.body.Token), payment.KindInvalidState, payment.CodeInvalidState)
	// Nothing to refund before it settles.
	wantRefusal(t, h.refund("r-early", c.body.Token, 100), payment.KindInvalidState, payment.CodeInvalidState)

	h.reconcileAfter(hAsync)
	p = h.payment(a.body.PaymentID)
	if p.Captured != 600 || p.Status != payment.StatusCaptured {
		t.Fatalf("captured %d status %s", p.Captured, p.Status)
	}
	wantEvents(t, p, payment.PaymentReceived, payment.PaymentAuthorized, payment.PaymentCaptureStarted, payment.PaymentCaptured)
	capNote := h.notificationFor(c.body.Token)
	h.wantMessages(authNote, capNote)

	r := h.refund("r", c.body.Token, 200)
	wantStatus(t, r, 202)
	if p := h.payment(a.body.PaymentID); p.Refunded != 0 {
		t.Errorf("pending refund counted: %d", p.Refunded)
	}
	wantRefusal(t, h.refund("r-over", c.body.Token, 401), payment.KindExceedsBalance, payment.CodeExceedsBalance)
	h.reconcileAfter(hAsync)
	p = h.payment(a.body.PaymentID)
	if p.Refunded != 200 {
		t.Fatalf("refunded %d", p.Refunded)
	}
	wantEvents(t, p, payment.PaymentReceived, payment.PaymentAuthorized, payment.PaymentCaptureStarted, payment.PaymentCaptured, payment.PaymentRefunded)
	h.wantMessages(authNote, capNote, h.notificationFor(r.body.Token))

	t.Run("void", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorize("a", "tok_async_3", 1000)
		h.reconcileAfter(hAsync)
		authNote := h.notificationFor(a.body.Token)
		v := h.void("v", a.body.Token)
		wantStatus(t, v, 202)
		if v.body.Amount != 1000 {
			t.Errorf("void amount %d", v.body.Amount)
		}
		p := h.payment(a.body.PaymentID)
		if p.Status != payment.StatusAuthorized {
			t.Errorf("status %s while the void is pending", p.Status)
		}
		wantEvents(t, p, payment.PaymentReceived, payment.PaymentAuthorized) // a pending void says nothing yet
		wantRefusal(t, h.capture("c", a.body.Token, 100), payment.KindInvalidState, payment.CodeInvalidState)
		wantRefusal(t, h.void("v2", a.body.Token), payment.KindInvalidState, payment.CodeInvalidState)
		h.reconcileAfter(hAsync)
		p = h.payment(a.body.PaymentID)
		if p.Status != payment.StatusCancelled {
			t.Fatalf("status %s", p.Status)
		}
		wantEvents(t, p, payment.PaymentReceived, payment.PaymentAuthorized, payment.PaymentCancelled)
		h.wantMessages(authNote, h.notificationFor(v.body.Token))
		// Now a second void is a no-op success.
		v3 := h.void("v3", a.body.Token)
		if v3.Status != 200 || v3.body.Token != v.body.Token {
			t.Errorf("void of a voided payment: %d %s", v3.Status, v3.Body)
		}
	})
}

func TestOutageAnswersPendingThenSucceeds(t *testing.T) {
	h := newHarness(t)
	policy := payment.Policy{Async: true, Deadline: 50 * time.Millisecond}
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_outage_1", Amount: 800, Policy: policy})
	wantStatus(t, r, 202)
	if r.body.State != string(payment.Retrying) || r.body.ActionID == "" {
		t.Fatalf("answer %s", r.Body)
	}
	tx := h.tx(r.body.Token)
	if !tx.Notify || tx.Attempts < 1 || tx.GiveUpAt.IsZero() {
		t.Errorf("retrying transaction %+v", tx)
	}
	wantEvents(t, h.payment(r.body.PaymentID), payment.PaymentReceived)
	if rec := h.record("a"); rec == nil || !rec.Done || !bytes.Equal(rec.Answer.Body, r.Body) {
		t.Errorf("the 202 is not remembered: %+v", rec)
	}

	// Still in the outage: retried, still retrying.
	before := h.gw.count("execute")
	h.reconcileAfter(2 * hReconcile)
	tx = h.tx(r.body.Token)
	if tx.State != payment.Retrying {
		t.Fatalf("state %s during the outage", tx.State)
	}
	if h.gw.count("execute") == before {
		t.Error("the reconciler did not try again")
	}
	h.wantMessages()

	// After it: succeeds, notifies once.
	h.reconcileAfter(hOutage)
	p := h.payment(r.body.PaymentID)
	tx = p.Tx(r.body.Token)
	if tx.State != payment.Succeeded || p.Status != payment.StatusAuthorized || p.Authorized != 800 {
		t.Fatalf("after the outage: tx %+v, status %s", tx, p.Status)
	}
	wantEvents(t, p, payment.PaymentReceived, payment.PaymentAuthorized)
	h.wantMessages(testNotifier(p, tx))
	if l := h.ledgerEntries(); len(l) != 1 || l[0].Key != tx.PSPKey {
		t.Errorf("ledger %+v", l)
	}
	for _, op := range h.gw.executions(payment.Authorize) {
		if op.Key != tx.PSPKey || !op.CreatedAt.Equal(tx.CreatedAt) {
			t.Errorf("attempt with key %q created %s; want one key and the first creation time", op.Key, op.CreatedAt)
		}
	}
	if h.isOpen(p.ID) {
		t.Error("still open")
	}
}

func TestUnavailableSyncFailsAndIsNotRemembered(t *testing.T) {
	h := newHarness(t)
	policy := payment.Policy{Async: false, Deadline: 50 * time.Millisecond}
	// tok_unavailable after a successful authorization: the capture fails.
	a := h.authorized("a", "tok_visa_8888", 500)
	_ = a
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "u", SourceToken: "tok_unavailable_1", Amount: 800, Policy: policy})
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	if r.body.Token == "" || r.body.State != string(payment.Failed) {
		t.Errorf("answer %s", r.Body)
	}
	if rec := h.record("u"); rec != nil {
		t.Fatalf("an unavailable failure left an idempotency record %+v", rec)
	}
	p := h.payment(r.body.PaymentID)
	if p.Status != payment.StatusRefused {
		t.Errorf("status %s", p.Status)
	}
	wantEvents(t, p, payment.PaymentRefused)
	h.wantMessages()
	n := len(h.gw.executions(payment.Authorize))
	if n < 2 {
		t.Errorf("%d authorize attempts within the deadline; transient faults must be retried", n)
	}
}

// The repeat of a call that failed as unavailable is a new attempt.
func TestUnavailableSyncRepeatIsNewAttempt(t *testing.T) {
	h := newHarness(t)
	policy := payment.Policy{Async: false, Deadline: 50 * time.Millisecond}
	req := payment.Request{Kind: payment.Authorize, Key: "u", SourceToken: "tok_unavailable_1", Amount: 800, Policy: policy}
	first := h.do(req)
	wantRefusal(t, first, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	n := h.gw.count("execute")
	second, err := tryDo(h.eng, context.Background(), req)
	if err != nil {
		t.Fatalf("repeat after an unavailable failure: Do failed in the store: %v", err)
	}
	wantRefusal(t, second, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	if h.gw.count("execute") == n || second.body.Token == first.body.Token {
		t.Error("the repeat was not a new attempt")
	}
}

func TestUnavailableAsyncGivesUpAtAsyncTimeout(t *testing.T) {
	h := newHarness(t)
	policy := payment.Policy{Async: true, Deadline: 50 * time.Millisecond, AsyncTimeout: time.Minute}
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_unavailable", Amount: 800, Policy: policy})
	wantStatus(t, r, 202)
	if r.body.State != string(payment.Retrying) {
		t.Fatalf("answer %s", r.Body)
	}
	if tx := h.tx(r.body.Token); !tx.GiveUpAt.Equal(hEpoch.Add(time.Minute)) {
		t.Errorf("GiveUpAt %s, want %s", tx.GiveUpAt, hEpoch.Add(time.Minute))
	}
	h.reconcileAfter(30 * time.Second)
	if tx := h.tx(r.body.Token); tx.State != payment.Retrying {
		t.Fatalf("state %s before the async timeout", tx.State)
	}
	h.wantMessages()

	h.reconcileAfter(31 * time.Second)
	p := h.payment(r.body.PaymentID)
	tx := p.Tx(r.body.Token)
	if tx.State != payment.Failed || tx.Code != payment.CodeGatewayUnavailable || p.Status != payment.StatusRefused {
		t.Fatalf("after the async timeout: tx %+v status %s", tx, p.Status)
	}
	wantEvents(t, p, payment.PaymentReceived, payment.PaymentRefused)
	body := testNotifier(p, tx)
	if !bytes.Contains(body, []byte(`"code":"gateway_unavailable"`)) {
		t.Errorf("notification %s", body)
	}
	h.wantMessages(body)
	if n := len(h.ledgerEntries()); n != 0 {
		t.Errorf("%d ledger lines", n)
	}
}
