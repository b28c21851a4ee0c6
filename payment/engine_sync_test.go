package payment_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
	"github.com/paybridge/caddy-paybridge/payment"
)

func TestAuthorizeSyncSuccess(t *testing.T) {
	h := newHarness(t)
	r := h.do(payment.Request{
		Kind: payment.Authorize, Key: "cl|authorize|1", SourceToken: "tok_visa_4242", Amount: 12900, Currency: "EUR",
		Purchase: payment.Purchase{OrderID: "ord_1", OrderNumber: "42"},
	})
	wantStatus(t, r, 200)
	if r.body.State != string(payment.Succeeded) || r.body.Amount != 12900 || r.body.ActionID != "" {
		t.Fatalf("answer %s", r.Body)
	}
	hasPrefix(t, "transaction token", r.body.Token, "pbt_")
	hasPrefix(t, "payment id", r.body.PaymentID, "pay_")

	p := h.payment(r.body.PaymentID)
	if p.Status != payment.StatusAuthorized || p.Amount != 12900 || p.Authorized != 12900 || p.Captured != 0 || p.Refunded != 0 {
		t.Errorf("payment status %s amount %d authorized %d captured %d refunded %d", p.Status, p.Amount, p.Authorized, p.Captured, p.Refunded)
	}
	if p.Currency != "EUR" || p.Platform != hPlatform || p.Handler != hHandler || p.Gateway != hGateway || p.SourceToken != "tok_visa_4242" {
		t.Errorf("payment %+v", p)
	}
	if p.Purchase != (payment.Purchase{OrderID: "ord_1", OrderNumber: "42"}) {
		t.Errorf("purchase %+v", p.Purchase)
	}
	if len(p.Txs) != 1 {
		t.Fatalf("%d transactions, want 1", len(p.Txs))
	}
	tx := p.Txs[0]
	if tx.Kind != payment.Authorize || tx.State != payment.Succeeded || tx.Token != r.body.Token || tx.Amount != 12900 {
		t.Errorf("transaction %+v", tx)
	}
	hasPrefix(t, "PSP key", tx.PSPKey, "pbk_")
	if tx.PSPRef != sandbox.Ref(tx.PSPKey) {
		t.Errorf("PSPRef %q, want %q", tx.PSPRef, sandbox.Ref(tx.PSPKey))
	}
	if tx.Details["last4"] != "4242" || tx.Details["brand"] != "sandbox" {
		t.Errorf("details %v", tx.Details)
	}
	if tx.Attempts != 1 || tx.Notify || tx.ActionID != "" || tx.Verify || tx.Code != "" {
		t.Errorf("transaction %+v", tx)
	}
	wantEvents(t, p, payment.PaymentAuthorized)
	if e := p.Events[0]; e.Amount != 12900 || e.TxID != tx.ID || !e.OccurredAt.Equal(hEpoch) {
		t.Errorf("event %+v", e)
	}

	ledger := h.ledgerEntries()
	if len(ledger) != 1 || ledger[0].Op != "authorize" || ledger[0].Key != tx.PSPKey || ledger[0].Amount != 12900 || ledger[0].Currency != "EUR" {
		t.Errorf("ledger %+v", ledger)
	}
	rec := h.record("cl|authorize|1")
	if rec == nil || !rec.Done || rec.PaymentID != p.ID || rec.TxID != tx.ID || rec.Answer.Status != 200 || !bytes.Equal(rec.Answer.Body, r.Body) {
		t.Errorf("idempotency record %+v", rec)
	}
	if h.isOpen(p.ID) {
		t.Error("a settled payment is listed as open")
	}
	h.wantMessages()
	for _, tok := range []string{tx.Token, tx.PSPKey} {
		if id, err := h.eng.PaymentByToken(context.Background(), tok); err != nil || id != p.ID {
			t.Errorf("PaymentByToken: %q, %v; want %q", id, err, p.ID)
		}
	}
}

func TestAuthorizeDeclined(t *testing.T) {
	for _, tc := range []struct{ source, code string }{
		{"tok_decline", sandbox.CodeCardDeclined},
		{"tok_decline_9f2c", sandbox.CodeCardDeclined},
		{"tok_insufficient_funds", sandbox.CodeInsufficientFunds},
	} {
		t.Run(tc.source, func(t *testing.T) {
			h := newHarness(t)
			r := h.authorize("k", tc.source, 5000)
			wantRefusal(t, r, payment.KindDeclined, tc.code)
			if r.body.State != string(payment.Failed) || r.body.Token == "" || r.body.Amount != 5000 {
				t.Errorf("answer %s", r.Body)
			}
			p := h.payment(r.body.PaymentID)
			if p.Status != payment.StatusRefused || p.Authorized != 0 {
				t.Errorf("payment status %s authorized %d", p.Status, p.Authorized)
			}
			if tx := p.Txs[0]; tx.Code != tc.code || tx.Message == "" || tx.Verify {
				t.Errorf("transaction code %q message %q verify %v", tx.Code, tx.Message, tx.Verify)
			}
			wantEvents(t, p, payment.PaymentRefused)
			if n := len(h.ledgerEntries()); n != 0 {
				t.Errorf("%d ledger lines for a decline", n)
			}
			if rec := h.record("k"); rec != nil {
				t.Errorf("a decline left an idempotency record %+v", rec)
			}
			if h.isOpen(p.ID) {
				t.Error("a refused payment is listed as open")
			}
			// A declined authorization can be neither captured nor voided.
			wantRefusal(t, h.capture("c", r.body.Token, 5000), payment.KindInvalidState, payment.CodeInvalidState)
			wantRefusal(t, h.void("v", r.body.Token), payment.KindInvalidState, payment.CodeInvalidState)
		})
	}
}

func TestLifecycleTotalsAndEvents(t *testing.T) {
	h := newHarness(t)
	auth := h.authorized("a", "tok_visa_1111", 1000)

	c1 := h.capture("c1", auth.body.Token, 600)
	wantStatus(t, c1, 200)
	c2 := h.capture("c2", auth.body.Token, 400)
	wantStatus(t, c2, 200)
	if c1.body.PaymentID != auth.body.PaymentID || c1.body.Token == auth.body.Token || c1.body.Token == c2.body.Token {
		t.Fatalf("captures %s %s", c1.Body, c2.Body)
	}
	wantStatus(t, h.refund("r1", c1.body.Token, 250), 200)
	wantStatus(t, h.refund("r2", c2.body.Token, 400), 200)

	p := h.payment(auth.body.PaymentID)
	if p.Status != payment.StatusCaptured || p.Authorized != 1000 || p.Captured != 1000 || p.Refunded != 650 {
		t.Errorf("status %s authorized %d captured %d refunded %d", p.Status, p.Authorized, p.Captured, p.Refunded)
	}
	wantEvents(t, p, payment.PaymentAuthorized, payment.PaymentCaptured, payment.PaymentCaptured, payment.PaymentRefunded, payment.PaymentRefunded)
	for i, amount := range []int64{1000, 600, 400, 250, 400} {
		if p.Events[i].Amount != amount {
			t.Errorf("event %d amount %d, want %d", i, p.Events[i].Amount, amount)
		}
	}
	c1tx := p.Tx(c1.body.Token)
	if c1tx.Parent != auth.body.Token || c1tx.PSPRef != sandbox.Ref(c1tx.PSPKey) {
		t.Errorf("capture parent %q ref %q", c1tx.Parent, c1tx.PSPRef)
	}
	r1 := p.Txs[3]
	if r1.Kind != payment.Refund || r1.Parent != c1.body.Token {
		t.Errorf("refund %+v", r1)
	}
	// The PSP saw the authorization's reference on the captures, and each
	// capture's on its refund.
	for _, op := range h.gw.executions(payment.Capture) {
		if op.Ref != p.Authorization().PSPRef {
			t.Errorf("capture executed with Ref %q, want the authorization's %q", op.Ref, p.Authorization().PSPRef)
		}
	}
	for _, op := range h.gw.executions(payment.Refund) {
		if op.Ref != sandbox.Ref(p.Tx(c1.body.Token).PSPKey) && op.Ref != sandbox.Ref(p.Tx(c2.body.Token).PSPKey) {
			t.Errorf("refund executed with Ref %q, not a capture's", op.Ref)
		}
	}
	if n := len(h.ledgerEntries()); n != 5 {
		t.Errorf("%d ledger lines, want 5", n)
	}

	t.Run("void", func(t *testing.T) {
		a := h.authorized("a2", "tok_visa_2222", 700)
		v := h.void("v2", a.body.Token)
		wantStatus(t, v, 200)
		p := h.payment(a.body.PaymentID)
		if p.Status != payment.StatusCancelled || p.Authorized != 700 || p.Captured != 0 {
			t.Errorf("status %s authorized %d captured %d", p.Status, p.Authorized, p.Captured)
		}
		vt := p.Tx(v.body.Token)
		if vt.Kind != payment.Void || vt.Amount != 700 || vt.Parent != a.body.Token {
			t.Errorf("void %+v", vt)
		}
		wantEvents(t, p, payment.PaymentAuthorized, payment.PaymentCancelled)
	})
	t.Run("capture declined", func(t *testing.T) {
		a := h.authorized("a3", "tok_capture_fail_1", 500)
		c := h.capture("c3", a.body.Token, 500)
		wantRefusal(t, c, payment.KindDeclined, sandbox.CodeCaptureDeclined)
		p := h.payment(a.body.PaymentID)
		if p.Status != payment.StatusAuthorized || p.Captured != 0 {
			t.Errorf("status %s captured %d", p.Status, p.Captured)
		}
		wantEvents(t, p, payment.PaymentAuthorized, payment.PaymentCaptureFailed)
		// The failed capture reserves nothing: the authorization can still be voided.
		wantStatus(t, h.void("v3", a.body.Token), 200)
	})
	t.Run("refund declined", func(t *testing.T) {
		a := h.authorized("a4", "tok_refund_fail_1", 500)
		c := h.capture("c4", a.body.Token, 500)
		wantStatus(t, c, 200)
		r := h.refund("r4", c.body.Token, 100)
		wantRefusal(t, r, payment.KindDeclined, sandbox.CodeRefundDeclined)
		p := h.payment(a.body.PaymentID)
		if p.Refunded != 0 || p.Captured != 500 {
			t.Errorf("captured %d refunded %d", p.Captured, p.Refunded)
		}
		wantEvents(t, p, payment.PaymentAuthorized, payment.PaymentCaptured, payment.PaymentRefundFailed)
	})
}

func TestReplaySameKeyAnswersIdenticallyWithoutSecondPSPCall(t *testing.T) {
	h := newHarness(t)
	first := h.authorize("auth", "tok_visa_3333", 2500)
	wantStatus(t, first, 200)
	again := h.authorize("auth", "tok_visa_3333", 2500)
	if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) {
		t.Fatalf("replay answered %d %s, first %d %s", again.Status, again.Body, first.Status, first.Body)
	}
	c := h.capture("cap", first.body.Token, 1000)
	c2 := h.capture("cap", first.body.Token, 1000)
	if c2.Status != 200 || !bytes.Equal(c.Body, c2.Body) {
		t.Fatalf("capture replay %s, first %s", c2.Body, c.Body)
	}
	r := h.refund("ref", c.body.Token, 300)
	r2 := h.refund("ref", c.body.Token, 300)
	if r2.Status != 200 || !bytes.Equal(r.Body, r2.Body) {
		t.Fatalf("refund replay %s, first %s", r2.Body, r.Body)
	}

	// Records live as long as their payment: a restart changes nothing.
	h.restart()
	for _, tc := range []struct {
		first result
		again func() result
	}{
		{first, func() result { return h.authorize("auth", "tok_visa_3333", 2500) }},
		{c, func() result { return h.capture("cap", first.body.Token, 1000) }},
		{r, func() result { return h.refund("ref", c.body.Token, 300) }},
	} {
		if got := tc.again(); got.Status != tc.first.Status || !bytes.Equal(got.Body, tc.first.Body) {
			t.Errorf("replay after restart %d %s, first %d %s", got.Status, got.Body, tc.first.Status, tc.first.Body)
		}
	}
	if n := h.gw.count("execute"); n != 0 {
		t.Errorf("replays after restart called the PSP %d times", n)
	}

	ledger := h.ledgerEntries()
	if len(ledger) != 3 {
		t.Fatalf("ledger %+v, want one line per operation", ledger)
	}
	p := h.payment(first.body.PaymentID)
	if p.Captured != 1000 || p.Refunded != 300 || len(p.Txs) != 3 {
		t.Errorf("captured %d refunded %d with %d transactions", p.Captured, p.Refunded, len(p.Txs))
	}
}

// A key reused for another amount is refused: answering with the first
// call's outcome would tell the platform a refund of 700 was made when 300
// was. The refusal changes nothing, and the first call still replays.
func TestKeyReusedForAnotherAmountIsRefused(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("auth", "tok_visa_4242", 2500)
	c := h.capture("cap", a.body.Token, 1000)
	wantStatus(t, c, 200)
	r := h.refund("ref", c.body.Token, 300)
	wantStatus(t, r, 200)

	for _, tc := range []struct {
		name string
		do   func() result
	}{
		{"refund", func() result { return h.refund("ref", c.body.Token, 700) }},
		{"capture", func() result { return h.capture("cap", a.body.Token, 1500) }},
		{"authorize", func() result { return h.authorize("auth", "tok_visa_4242", 9900) }},
	} {
		got := tc.do()
		if got.Status != 400 || got.body.Code != payment.CodeIdempotencyKeyReused {
			t.Errorf("%s reusing its key for another amount: %d %s", tc.name, got.Status, got.Body)
		}
	}
	if again := h.refund("ref", c.body.Token, 300); again.Status != r.Status || !bytes.Equal(again.Body, r.Body) {
		t.Errorf("the first refund's repeat: %d %s, first %s", again.Status, again.Body, r.Body)
	}
	p := h.payment(a.body.PaymentID)
	if p.Captured != 1000 || p.Refunded != 300 || len(p.Txs) != 3 {
		t.Errorf("captured %d refunded %d with %d transactions after the refusals", p.Captured, p.Refunded, len(p.Txs))
	}
	if n := len(h.ledgerEntries()); n != 3 {
		t.Errorf("%d PSP operations, want 3", n)
	}
}

// A repeat under the same key for the same number in another currency is
// another call: answering it with the first one's outcome would tell the
// platform that 1000 JPY was authorized when 1000 EUR was. It is refused,
// whether the first call finished or may still stand at the PSP.
func TestKeyReusedInAnotherCurrencyIsRefused(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("auth", "tok_visa_4242", 1000)
	inJPY := payment.Request{Kind: payment.Authorize, Key: "auth", SourceToken: "tok_visa_4242", Amount: 1000, Currency: "JPY"}
	if r := h.do(inJPY); r.Status != 400 || r.body.Code != payment.CodeIdempotencyKeyReused {
		t.Errorf("the finished call's key, in JPY: %d %s", r.Status, r.Body)
	}
	c := h.capture("cap", a.body.Token, 1000)
	wantStatus(t, c, 200)
	if r := h.do(payment.Request{Kind: payment.Capture, Key: "cap", Token: a.body.Token, Amount: 1000, Currency: "JPY"}); r.Status != 400 || r.body.Code != payment.CodeIdempotencyKeyReused {
		t.Errorf("the capture's key, in JPY: %d %s", r.Status, r.Body)
	}

	// The answer of an authorization is lost: it may stand at the PSP.
	h.loseAnswers()
	lost := payment.Request{Kind: payment.Authorize, Key: "lost", SourceToken: "tok_visa_2468", Amount: 700, Currency: "EUR", Policy: slow}
	wantRefusal(t, h.do(lost), payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)
	lost.Currency = "JPY"
	if r := h.do(lost); r.Status != 400 || r.body.Code != payment.CodeIdempotencyKeyReused {
		t.Errorf("the uncertain call's key, in JPY: %d %s", r.Status, r.Body)
	}
	if n := len(h.ledgerOps("authorize")); n != 2 {
		t.Errorf("%d authorizations at the PSP, want 2 (the first and the lost one)", n)
	}
}

// A decline is not remembered: the repeat is a new attempt, which reaches the
// PSP again with the same PSP idempotency key.
func TestDeclinedAuthorizeRepeatIsNewAttemptWithSamePSPKey(t *testing.T) {
	h := newHarness(t)
	first, err := tryDo(h.eng, context.Background(), payment.Request{Kind: payment.Authorize, Key: "k", SourceToken: "tok_decline", Amount: 900})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, first, payment.KindDeclined, sandbox.CodeCardDeclined)
	second, err := tryDo(h.eng, context.Background(), payment.Request{Kind: payment.Authorize, Key: "k", SourceToken: "tok_decline", Amount: 900})
	if err != nil {
		t.Fatalf("repeat of a declined authorization: Do failed in the store: %v", err)
	}
	wantRefusal(t, second, payment.KindDeclined, sandbox.CodeCardDeclined)
	if bytes.Equal(first.Body, second.Body) || first.body.Token == second.body.Token {
		t.Errorf("the repeat of a decline was replayed: %s", second.Body)
	}
	ops := h.gw.executions(payment.Authorize)
	if len(ops) != 2 || ops[0].Key != ops[1].Key || ops[0].Key == "" {
		t.Fatalf("executions %+v, want two with one PSP key", ops)
	}
}

func TestDeclinedCaptureRepeatIsNewAttemptWithSamePSPKey(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("a", "tok_capture_fail", 900)
	first := h.capture("c", a.body.Token, 900)
	wantRefusal(t, first, payment.KindDeclined, sandbox.CodeCaptureDeclined)
	second := h.capture("c", a.body.Token, 900)
	wantRefusal(t, second, payment.KindDeclined, sandbox.CodeCaptureDeclined)
	if first.body.Token == second.body.Token {
		t.Error("the repeat of a declined capture was replayed")
	}
	ops := h.gw.executions(payment.Capture)
	if len(ops) != 2 || ops[0].Key != ops[1].Key {
		t.Fatalf("capture executions %+v, want two with one PSP key", ops)
	}
	p := h.payment(a.body.PaymentID)
	wantEvents(t, p, payment.PaymentAuthorized, payment.PaymentCaptureFailed, payment.PaymentCaptureFailed)
}

func TestConcurrentCapturesNeverExceedAuthorization(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("a", "tok_visa_5555", 1000)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok      int
		refused int
		other   []string
	)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := tryDo(h.eng, context.Background(), payment.Request{Kind: payment.Capture, Key: fmt.Sprintf("cap-%d", i), Token: a.body.Token, Amount: 100})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				other = append(other, err.Error())
			case r.Status == 200:
				ok++
			case r.body.Kind == int(payment.KindExceedsBalance) && r.body.Code == payment.CodeExceedsBalance:
				refused++
			default:
				other = append(other, string(r.Body))
			}
		}()
	}
	wg.Wait()
	if ok != 10 || refused != 10 || len(other) != 0 {
		t.Fatalf("%d captured, %d refused for the balance, others %q; want 10 and 10", ok, refused, other)
	}
	p := h.payment(a.body.PaymentID)
	if p.Captured != 1000 || p.Status != payment.StatusCaptured {
		t.Errorf("captured %d status %s", p.Captured, p.Status)
	}
	if n := len(h.ledgerOps("capture")); n != 10 {
		t.Errorf("%d capture ledger lines, want 10", n)
	}
	wantRefusal(t, h.capture("one-more", a.body.Token, 1), payment.KindExceedsBalance, payment.CodeExceedsBalance)
}

func TestConcurrentIdenticalAuthorizesExecuteOnce(t *testing.T) {
	h := newHarness(t)
	answers := make([]result, 20)
	errs := make([]error, 20)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = tryDo(h.eng, context.Background(), payment.Request{Kind: payment.Authorize, Key: "same", SourceToken: "tok_visa_7777", Amount: 4200})
		}()
	}
	wg.Wait()
	for i := range answers {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if answers[i].Status != 200 || !bytes.Equal(answers[i].Body, answers[0].Body) {
			t.Errorf("answer %d: %d %s; answer 0: %d %s", i, answers[i].Status, answers[i].Body, answers[0].Status, answers[0].Body)
		}
	}
	if l := h.ledgerEntries(); len(l) != 1 {
		t.Errorf("ledger %+v, want one line", l)
	}
	if n := h.gw.count("execute"); n != 1 {
		t.Errorf("%d PSP executions, want 1", n)
	}
}

func TestInvariants(t *testing.T) {
	t.Run("capture after void", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		wantStatus(t, h.void("v", a.body.Token), 200)
		wantRefusal(t, h.capture("c", a.body.Token, 100), payment.KindInvalidState, payment.CodeInvalidState)
		if n := len(h.gw.executions(payment.Capture)); n != 0 {
			t.Errorf("%d captures reached the PSP", n)
		}
	})
	t.Run("void after capture", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		wantStatus(t, h.capture("c", a.body.Token, 100), 200)
		wantRefusal(t, h.void("v", a.body.Token), payment.KindInvalidState, payment.CodeInvalidState)
		if p := h.payment(a.body.PaymentID); p.Status != payment.StatusCaptured {
			t.Errorf("status %s", p.Status)
		}
	})
	t.Run("refund with an authorization token", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		wantStatus(t, h.capture("c", a.body.Token, 1000), 200)
		wantRefusal(t, h.refund("r", a.body.Token, 100), payment.KindInvalidState, payment.CodeInvalidState)
	})
	t.Run("capture with a capture token", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		c := h.capture("c", a.body.Token, 100)
		wantRefusal(t, h.capture("c2", c.body.Token, 100), payment.KindInvalidState, payment.CodeInvalidState)
		wantRefusal(t, h.void("v", c.body.Token), payment.KindInvalidState, payment.CodeInvalidState)
	})
	t.Run("refund over captured", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		c := h.capture("c", a.body.Token, 600)
		r := h.refund("r", c.body.Token, 601)
		wantRefusal(t, r, payment.KindExceedsBalance, payment.CodeExceedsBalance)
		if r.body.Token != "" {
			t.Errorf("a refusal names a transaction: %s", r.Body)
		}
		if n := len(h.gw.executions(payment.Refund)); n != 0 {
			t.Errorf("%d refunds reached the PSP", n)
		}
	})
	t.Run("capture over authorized", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		wantRefusal(t, h.capture("c", a.body.Token, 1001), payment.KindExceedsBalance, payment.CodeExceedsBalance)
		wantStatus(t, h.capture("c2", a.body.Token, 700), 200)
		wantRefusal(t, h.capture("c3", a.body.Token, 301), payment.KindExceedsBalance, payment.CodeExceedsBalance)
		wantStatus(t, h.capture("c4", a.body.Token, 300), 200)
		if p := h.payment(a.body.PaymentID); p.Captured != 1000 {
			t.Errorf("captured %d", p.Captured)
		}
	})
	t.Run("partial refunds up to captured", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		c := h.capture("c", a.body.Token, 900)
		for i, amount := range []int64{300, 250, 350} {
			wantStatus(t, h.refund(fmt.Sprintf("r%d", i), c.body.Token, amount), 200)
		}
		wantRefusal(t, h.refund("r-more", c.body.Token, 1), payment.KindExceedsBalance, payment.CodeExceedsBalance)
		p := h.payment(a.body.PaymentID)
		if p.Refunded != 900 || p.Captured != 900 || p.Status != payment.StatusCaptured {
			t.Errorf("captured %d refunded %d status %s", p.Captured, p.Refunded, p.Status)
		}
	})
	t.Run("void of a voided payment", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		v1 := h.void("v1", a.body.Token)
		wantStatus(t, v1, 200)
		v2 := h.void("v2", a.body.Token) // another call, same wish
		wantStatus(t, v2, 200)
		if v2.body.Token != v1.body.Token || v2.body.State != string(payment.Succeeded) {
			t.Errorf("second void %s, first %s: want the existing void", v2.Body, v1.Body)
		}
		if n := len(h.ledgerOps("void")); n != 1 {
			t.Errorf("%d void ledger lines, want 1", n)
		}
		p := h.payment(a.body.PaymentID)
		if len(p.Txs) != 2 || p.Status != payment.StatusCancelled {
			t.Errorf("%d transactions, status %s", len(p.Txs), p.Status)
		}
		wantEvents(t, p, payment.PaymentAuthorized, payment.PaymentCancelled)
		if rec := h.record("v2"); rec == nil || !rec.Done || !bytes.Equal(rec.Answer.Body, v2.Body) {
			t.Errorf("the no-op void's answer is not remembered: %+v", rec)
		}
		if again := h.void("v2", a.body.Token); !bytes.Equal(again.Body, v2.Body) {
			t.Errorf("replay %s, first %s", again.Body, v2.Body)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		h := newHarness(t)
		wantRefusal(t, h.capture("c", "pbt_nope", 100), payment.KindNotFound, payment.CodePaymentNotFound)
		wantRefusal(t, h.void("v", ""), payment.KindNotFound, payment.CodePaymentNotFound)
		wantRefusal(t, h.refund("r", "pbt_nope", 100), payment.KindNotFound, payment.CodePaymentNotFound)
		if rec := h.record("c"); rec != nil {
			t.Errorf("a refusal left a record %+v", rec)
		}
	})
	t.Run("currency mismatch", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		r := h.do(payment.Request{Kind: payment.Capture, Key: "c", Token: a.body.Token, Amount: 100, Currency: "USD"})
		wantRefusal(t, r, payment.KindInvalidAmount, payment.CodeInvalidAmount)
		wantStatus(t, h.do(payment.Request{Kind: payment.Capture, Key: "c2", Token: a.body.Token, Amount: 100, Currency: "EUR"}), 200)
	})
	t.Run("refused is not remembered", func(t *testing.T) {
		h := newHarness(t)
		a := h.authorized("a", "tok_visa", 1000)
		wantRefusal(t, h.capture("c", a.body.Token, 2000), payment.KindExceedsBalance, payment.CodeExceedsBalance)
		// The same call again, once possible, is executed.
		wantStatus(t, h.capture("c", a.body.Token, 1000), 200)
	})
}

// The engine owns the money rules every platform shares; a platform decoder
// that lets a non-positive amount or an unknown currency through must not
// be able to capture nothing (which closes the authorization to voids) or
// refund a negative amount (which lowers Refunded, allowing refunds beyond
// what was captured).
func TestEngineRefusesNonPositiveAmountsAndUnknownCurrencies(t *testing.T) {
	h := newHarness(t)
	a := h.authorized("a", "tok_visa", 1000)
	c := h.capture("c", a.body.Token, 500)
	wantStatus(t, c, 200)
	for _, tc := range []struct {
		name string
		req  payment.Request
	}{
		{"capture 0", payment.Request{Kind: payment.Capture, Key: "c0", Token: a.body.Token, Amount: 0}},
		{"capture -100", payment.Request{Kind: payment.Capture, Key: "cneg", Token: a.body.Token, Amount: -100}},
		{"refund 0", payment.Request{Kind: payment.Refund, Key: "r0", Token: c.body.Token, Amount: 0}},
		{"refund -100", payment.Request{Kind: payment.Refund, Key: "rneg", Token: c.body.Token, Amount: -100}},
		{"authorize 0", payment.Request{Kind: payment.Authorize, Key: "a0", SourceToken: "tok_visa", Amount: 0, Currency: "EUR"}},
		{"authorize -1", payment.Request{Kind: payment.Authorize, Key: "aneg", SourceToken: "tok_visa", Amount: -1, Currency: "EUR"}},
		{"authorize XXX", payment.Request{Kind: payment.Authorize, Key: "axxx", SourceToken: "tok_visa", Amount: 100, Currency: "XXX"}},
		{"authorize eur", payment.Request{Kind: payment.Authorize, Key: "alow", SourceToken: "tok_visa", Amount: 100, Currency: "eur"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.req)
			if r.body.Kind != int(payment.KindInvalidAmount) || r.body.Code != payment.CodeInvalidAmount {
				t.Errorf("answered %d %s; want a refusal with kind KindInvalidAmount, code %s", r.Status, r.Body, payment.CodeInvalidAmount)
			}
		})
	}
	p := h.payment(a.body.PaymentID)
	if p.Captured != 500 || p.Refunded != 0 {
		t.Errorf("captured %d refunded %d, want 500 and 0", p.Captured, p.Refunded)
	}
}
