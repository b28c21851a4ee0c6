package payment_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Payment events are queued for every listener that wants them, in the
// store transaction that records the state change. These tests run the
// real engine over the harness's real store and sandbox, with two
// listeners: "all" (no filter) and "auth-cap" (PaymentAuthorized and
// PaymentCaptured only).

const (
	lAll     = "all"
	lAuthCap = "auth-cap"
)

var emitListeners = []payment.Listener{
	{Name: lAll},
	{Name: lAuthCap, Types: map[payment.EventType]bool{payment.PaymentAuthorized: true, payment.PaymentCaptured: true}},
}

// useListeners replaces the harness's engine by one over the same store
// and gateway whose settings name listeners; st, when set, is the store the
// engine uses (a wrapper of h.st).
func (h *harness) useListeners(st payment.Store, listeners ...payment.Listener) {
	if st == nil {
		st = h.st
	}
	h.eng = payment.New(payment.Config{
		Store:    st,
		Gateways: gatewayMap{hGateway: h.gw},
		Now:      h.clock.Now,
		Settings: func() payment.Settings {
			return payment.Settings{ReconcileInterval: hReconcile, MaxAge: 72 * time.Hour, Listeners: listeners}
		},
	})
	h.eng.RegisterNotifier(hPlatform, testNotifier)
}

// emitted is an event message as the tests compare it.
type emitted struct {
	Target    string
	PaymentID string
	Type      payment.EventType
	Sequence  int64
	Amount    int64
}

func (e emitted) String() string {
	return fmt.Sprintf("%s:%s#%d(%s %d)", e.Target, e.Type, e.Sequence, e.PaymentID, e.Amount)
}

// emittedBody is the part of an event body these tests read.
type emittedBody struct {
	ID         string            `json:"id"`
	Type       payment.EventType `json:"type"`
	OccurredAt string            `json:"occurred_at"`
	Sequence   int64             `json:"sequence"`
	Purchase   payment.Purchase  `json:"purchase"`
	Payment    struct {
		ID               string `json:"id"`
		Platform         string `json:"platform"`
		Gateway          string `json:"gateway"`
		GatewayReference string `json:"gateway_reference"`
	} `json:"payment"`
	Amount      payment.Money     `json:"amount"`
	PaymentData map[string]string `json:"paymentData"`
}

// eventMessages returns the queued event messages in Seq order, checking
// each against the payment it names: Kind "event", a body whose id,
// type, sequence and amount are those of the payment's event, CreatedAt
// the clock's time when queued (not checked here), and that no body
// carries the source token.
func (h *harness) eventMessages() []emitted {
	h.t.Helper()
	var ms []payment.Message
	for _, m := range h.messages() {
		if m.Kind == payment.EventKind {
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Seq < ms[j].Seq })
	var out []emitted
	for _, m := range ms {
		var b emittedBody
		if err := json.Unmarshal(m.Body, &b); err != nil {
			h.t.Fatalf("event message %d: %v: %s", m.Seq, err, m.Body)
		}
		p := h.payment(m.PaymentID)
		if b.Payment.ID != m.PaymentID || b.Payment.Platform != hPlatform || b.Payment.Gateway != hGateway {
			h.t.Errorf("message %d for payment %s: body payment %+v", m.Seq, m.PaymentID, b.Payment)
		}
		if b.Sequence < 1 || b.Sequence > int64(len(p.Events)) {
			h.t.Errorf("message %d: sequence %d, the payment has %d events", m.Seq, b.Sequence, len(p.Events))
		} else if ev := p.Events[b.Sequence-1]; ev.ID != b.ID || ev.Type != b.Type || ev.Amount != b.Amount.Amount {
			h.t.Errorf("message %d: body %s does not tell the payment's event %+v", m.Seq, m.Body, ev)
		}
		if b.Amount.Currency != p.Currency || b.Purchase != p.Purchase {
			h.t.Errorf("message %d: amount %+v purchase %+v, payment %s %+v", m.Seq, b.Amount, b.Purchase, p.Currency, p.Purchase)
		}
		if strings.Contains(string(m.Body), p.SourceToken) {
			h.t.Errorf("message %d carries the source token: %s", m.Seq, m.Body)
		}
		if _, err := time.Parse(time.RFC3339, b.OccurredAt); err != nil {
			h.t.Errorf("message %d: occurred_at %q", m.Seq, b.OccurredAt)
		}
		if m.Dead || m.Attempts != 0 || m.CreatedAt.IsZero() {
			h.t.Errorf("message %d: %+v", m.Seq, m)
		}
		out = append(out, emitted{Target: m.Target, PaymentID: m.PaymentID, Type: b.Type, Sequence: b.Sequence, Amount: b.Amount.Amount})
	}
	return out
}

// wantEmitted checks the queued event messages are exactly want, in order.
func (h *harness) wantEmitted(what string, want []emitted) {
	h.t.Helper()
	got := h.eventMessages()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		h.t.Fatalf("%s: event messages\n got  %v\n want %v", what, got, want)
	}
}

// to lists the messages one event makes: one per listener that wants it,
// in the listeners' order.
func to(pid string, typ payment.EventType, seq, amount int64) []emitted {
	var out []emitted
	for _, l := range emitListeners {
		if l.Types == nil || l.Types[typ] {
			out = append(out, emitted{Target: l.Name, PaymentID: pid, Type: typ, Sequence: seq, Amount: amount})
		}
	}
	return out
}

func TestEmitSyncFlowQueuesEventsPerListener(t *testing.T) {
	h := newHarness(t)
	h.useListeners(nil, emitListeners...)
	var want []emitted
	step := func(what string, more ...[]emitted) {
		t.Helper()
		for _, m := range more {
			want = append(want, m...)
		}
		h.wantEmitted(what, want)
	}

	a := h.authorized("emit|auth|1", "tok_visa_4242", 1000)
	pid := a.body.PaymentID
	step("authorize", to(pid, payment.PaymentAuthorized, 1, 1000))
	if p := h.payment(pid); len(p.Events) != 1 {
		t.Fatalf("payment events %+v", p.Events)
	}

	c1 := h.capture("emit|cap|1", a.body.Token, 400)
	wantStatus(t, c1, 200)
	step("partial capture", to(pid, payment.PaymentCaptured, 2, 400))

	// refusals by paybridge's own rules queue nothing
	wantRefusal(t, h.capture("emit|cap|too-much", a.body.Token, 601), payment.KindExceedsBalance, payment.CodeExceedsBalance)
	step("capture over the balance")
	wantRefusal(t, h.void("emit|void|after-capture", a.body.Token), payment.KindInvalidState, payment.CodeInvalidState)
	step("void after capture")
	wantRefusal(t, h.refund("emit|refund|of-auth", a.body.Token, 100), payment.KindInvalidState, payment.CodeInvalidState)
	step("refund of an authorization")
	wantRefusal(t, h.capture("emit|cap|unknown", "pbt_unknown", 100), payment.KindNotFound, payment.CodePaymentNotFound)
	step("capture of an unknown token")
	wantRefusal(t, h.capture("emit|cap|zero", a.body.Token, 0), payment.KindInvalidAmount, payment.CodeInvalidAmount)
	step("capture of 0")

	// a replayed request queues nothing new
	again := h.capture("emit|cap|1", a.body.Token, 400)
	if again.Status != c1.Status || string(again.Body) != string(c1.Body) {
		t.Fatalf("replay answered %d %s, first %d %s", again.Status, again.Body, c1.Status, c1.Body)
	}
	step("replayed capture")
	if r := h.authorize("emit|auth|1", "tok_visa_4242", 1000); string(r.Body) != string(a.Body) {
		t.Fatalf("replayed authorize answered %s, first %s", r.Body, a.Body)
	}
	step("replayed authorize")

	c2 := h.capture("emit|cap|2", a.body.Token, 600)
	wantStatus(t, c2, 200)
	step("capture of the rest", to(pid, payment.PaymentCaptured, 3, 600))

	r1 := h.refund("emit|refund|1", c2.body.Token, 250)
	wantStatus(t, r1, 200)
	step("partial refund", to(pid, payment.PaymentRefunded, 4, 250))
	wantRefusal(t, h.refund("emit|refund|too-much", c2.body.Token, 351), payment.KindExceedsBalance, payment.CodeExceedsBalance)
	step("refund over the balance")
	h.refund("emit|refund|1", c2.body.Token, 250)
	step("replayed refund")
	wantStatus(t, h.refund("emit|refund|2", c2.body.Token, 350), 200)
	step("refund of the rest", to(pid, payment.PaymentRefunded, 5, 350))

	// a second payment: authorize, void (and a void of the voided, a no-op)
	b := h.authorized("emit|auth|2", "tok_visa_1111", 700)
	pid2 := b.body.PaymentID
	step("second authorize", to(pid2, payment.PaymentAuthorized, 1, 700))
	wantStatus(t, h.void("emit|void|2", b.body.Token), 200)
	step("void", to(pid2, payment.PaymentCancelled, 2, 700))
	wantStatus(t, h.void("emit|void|2-again", b.body.Token), 200)
	step("void of a voided authorization")
	wantRefusal(t, h.capture("emit|cap|after-void", b.body.Token, 100), payment.KindInvalidState, payment.CodeInvalidState)
	step("capture after void")

	// declines: PaymentRefused, PaymentCaptureFailed, PaymentRefundFailed
	d := h.authorize("emit|auth|decline", "tok_decline", 500)
	wantRefusal(t, d, payment.KindDeclined, "card_declined")
	step("declined authorize", to(d.body.PaymentID, payment.PaymentRefused, 1, 500))

	cf := h.authorized("emit|auth|capfail", "tok_capture_fail", 300)
	step("authorize (capture fails)", to(cf.body.PaymentID, payment.PaymentAuthorized, 1, 300))
	wantRefusal(t, h.capture("emit|cap|capfail", cf.body.Token, 300), payment.KindDeclined, "capture_declined")
	step("declined capture", to(cf.body.PaymentID, payment.PaymentCaptureFailed, 2, 300))

	rf := h.authorized("emit|auth|reffail", "tok_refund_fail", 400)
	step("authorize (refund fails)", to(rf.body.PaymentID, payment.PaymentAuthorized, 1, 400))
	rc := h.capture("emit|cap|reffail", rf.body.Token, 400)
	wantStatus(t, rc, 200)
	step("capture (refund fails)", to(rf.body.PaymentID, payment.PaymentCaptured, 2, 400))
	wantRefusal(t, h.refund("emit|refund|reffail", rc.body.Token, 100), payment.KindDeclined, "refund_declined")
	step("declined refund", to(rf.body.PaymentID, payment.PaymentRefundFailed, 3, 100))

	// the queue holds nothing but these events: sync operations owe the
	// platform no callback
	if n := len(h.messages()); n != len(want) {
		t.Errorf("%d outbox messages, want the %d events only", n, len(want))
	}
	// every payment's events are in its record, numbered 1, 2, ...
	wantEvents(t, h.payment(pid), payment.PaymentAuthorized, payment.PaymentCaptured, payment.PaymentCaptured, payment.PaymentRefunded, payment.PaymentRefunded)
	wantEvents(t, h.payment(pid2), payment.PaymentAuthorized, payment.PaymentCancelled)
}

func TestEmitAsyncFlowQueuesEventsWhenSettled(t *testing.T) {
	h := newHarness(t)
	h.useListeners(nil, emitListeners...)

	a := h.authorize("emit|auth|async", "tok_async", 800)
	wantStatus(t, a, 202)
	pid := a.body.PaymentID
	want := to(pid, payment.PaymentReceived, 1, 800)
	h.wantEmitted("pending authorize", want)

	// still pending: nothing new
	h.reconcileAfter(hReconcile)
	h.wantEmitted("still pending", want)

	h.reconcileAfter(hAsync)
	want = append(want, to(pid, payment.PaymentAuthorized, 2, 800)...)
	h.wantEmitted("settled authorize", want)
	if tx := h.tx(a.body.Token); tx.State != payment.Succeeded {
		t.Fatalf("authorization %s", tx.State)
	}
	// the platform is owed its callback too, in the same queue order
	var callbacks int
	for _, m := range h.messages() {
		if m.Kind == hPlatform {
			callbacks++
		}
	}
	if callbacks != 1 {
		t.Errorf("%d platform callbacks queued, want 1", callbacks)
	}
	h.reconcileAfter(hReconcile)
	h.wantEmitted("settled, reconciled again", want)

	c := h.capture("emit|cap|async", a.body.Token, 800)
	wantStatus(t, c, 202)
	want = append(want, to(pid, payment.PaymentCaptureStarted, 3, 800)...)
	h.wantEmitted("pending capture", want)
	h.reconcileAfter(hAsync)
	want = append(want, to(pid, payment.PaymentCaptured, 4, 800)...)
	h.wantEmitted("settled capture", want)

	// 3-D Secure
	s := h.authorize("emit|auth|3ds", "tok_3ds", 900)
	wantStatus(t, s, 202)
	want = append(want, to(s.body.PaymentID, payment.PaymentAuthenticationStarted, 1, 900)...)
	h.wantEmitted("3-D Secure pending", want)
	h.reconcileAfter(hAsync)
	want = append(want, to(s.body.PaymentID, payment.PaymentAuthorized, 2, 900)...)
	h.wantEmitted("3-D Secure settled", want)

	// a pending refund tells nothing until it settles
	r := h.refund("emit|refund|async", c.body.Token, 300)
	wantStatus(t, r, 202)
	h.wantEmitted("pending refund", want)
	h.reconcileAfter(hAsync)
	want = append(want, to(pid, payment.PaymentRefunded, 5, 300)...)
	h.wantEmitted("settled refund", want)
}

func TestEmitWithoutListenersQueuesNothing(t *testing.T) {
	h := newHarness(t)
	h.useListeners(nil)
	a := h.authorized("emit|auth|none", "tok_visa_4242", 1000)
	wantStatus(t, h.capture("emit|cap|none", a.body.Token, 1000), 200)
	if ms := h.messages(); len(ms) != 0 {
		t.Fatalf("%d messages queued without listeners: %+v", len(ms), ms)
	}
	wantEvents(t, h.payment(a.body.PaymentID), payment.PaymentAuthorized, payment.PaymentCaptured)
}

// A cart, not an order: the body's purchase is {"cartId"}.
func TestEmitPurchaseCart(t *testing.T) {
	h := newHarness(t)
	h.useListeners(nil, payment.Listener{Name: lAll})
	r := h.do(payment.Request{Kind: payment.Authorize, Key: "emit|auth|cart", SourceToken: "tok_visa_4242", Amount: 100, Currency: "EUR",
		Purchase: payment.Purchase{CartID: "cart_9"}})
	wantStatus(t, r, 200)
	ms := h.messages()
	if len(ms) != 1 {
		t.Fatalf("%d messages", len(ms))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(ms[0].Body, &top); err != nil {
		t.Fatal(err)
	}
	if got := string(top["purchase"]); got != `{"cartId":"cart_9"}` {
		t.Errorf("purchase %s, want {\"cartId\":\"cart_9\"}", got)
	}
}

// failingStore makes Enqueue of event messages fail while fail is set, to
// show that events are queued in the transaction of the state change: when
// queueing fails, the state change is not recorded either.
type failingStore struct {
	payment.Store
	fail atomic.Bool
}

var errEnqueue = errors.New("injected: cannot enqueue an event")

func (s *failingStore) Update(ctx context.Context, fn func(payment.Tx) error) error {
	return s.Store.Update(ctx, func(tx payment.Tx) error { return fn(failingTx{tx, s}) })
}

type failingTx struct {
	payment.Tx
	s *failingStore
}

func (t failingTx) Enqueue(m *payment.Message) error {
	if m.Kind == payment.EventKind && t.s.fail.Load() {
		return errEnqueue
	}
	return t.Tx.Enqueue(m)
}

func TestEmitSameTransactionAsStateChange(t *testing.T) {
	h := newHarness(t)
	fs := &failingStore{Store: h.st}
	h.useListeners(fs, emitListeners...)

	// a synchronous authorization whose event cannot be queued is not
	// recorded as authorized, and nothing is queued
	fs.fail.Store(true)
	_, err := tryDo(h.eng, context.Background(), payment.Request{Kind: payment.Authorize, Key: "emit|auth|fail",
		SourceToken: "tok_visa_4242", Amount: 1000, Currency: "EUR", Purchase: payment.Purchase{OrderID: "ord_f"}})
	if !errors.Is(err, errEnqueue) {
		t.Fatalf("Do = %v, want the enqueue error", err)
	}
	rec := h.record("emit|auth|fail")
	if rec == nil || rec.Done {
		t.Fatalf("idempotency record %+v: the answer was recorded although its events were not queued", rec)
	}
	p := h.payment(rec.PaymentID)
	if len(p.Events) != 0 || p.Status == payment.StatusAuthorized || p.Txs[0].State == payment.Succeeded {
		t.Fatalf("state change recorded without its events: status %s, tx %s, events %+v", p.Status, p.Txs[0].State, p.Events)
	}
	if ms := h.messages(); len(ms) != 0 {
		t.Fatalf("%d messages queued: %+v", len(ms), ms)
	}

	// once the store recovers, the reconciler finishes the operation left
	// in flight, and its event is queued with it, once
	fs.fail.Store(false)
	h.reconcileAfter(hReconcile)
	h.reconcileAfter(hReconcile)
	p = h.payment(rec.PaymentID)
	if p.Txs[0].State != payment.Succeeded {
		t.Fatalf("the operation left in flight is %s after the reconciler ran", p.Txs[0].State)
	}
	h.wantEmitted("finished by the reconciler", to(p.ID, payment.PaymentAuthorized, 1, 1000))
	wantEvents(t, p, payment.PaymentAuthorized)
}

func TestEmitSameTransactionInReconcile(t *testing.T) {
	h := newHarness(t)
	fs := &failingStore{Store: h.st}
	h.useListeners(fs, emitListeners...)

	// a pending authorization settles only together with its event
	a := h.authorize("emit|auth|async-fail", "tok_async", 800)
	wantStatus(t, a, 202)
	pid := a.body.PaymentID
	want := to(pid, payment.PaymentReceived, 1, 800)
	h.wantEmitted("pending", want)

	fs.fail.Store(true)
	h.reconcileAfter(hAsync)
	if tx := h.tx(a.body.Token); tx.State != payment.Pending {
		t.Fatalf("authorization %s although its event could not be queued", tx.State)
	}
	if p := h.payment(pid); len(p.Events) != 1 {
		t.Fatalf("events recorded without being queued: %+v", p.Events)
	}
	h.wantEmitted("settlement failed to record", want)
	for _, m := range h.messages() {
		if m.Kind == hPlatform {
			t.Errorf("platform callback queued although the settlement was not recorded: %s", m.Body)
		}
	}

	fs.fail.Store(false)
	h.reconcileAfter(hReconcile)
	if tx := h.tx(a.body.Token); tx.State != payment.Succeeded {
		t.Fatalf("authorization %s after the store recovered", tx.State)
	}
	want = append(want, to(pid, payment.PaymentAuthorized, 2, 800)...)
	h.wantEmitted("settled once the store recovered", want)
	wantEvents(t, h.payment(pid), payment.PaymentReceived, payment.PaymentAuthorized)
}
