package payment_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/store"
)

// The engine tests run the real engine over a real Badger store in a
// temporary directory and the real sandbox PSP, with one fake clock shared
// by both. Background work is driven by ReconcileOnce after moving the
// clock, never by sleeping.

const (
	hGateway   = "sbx"
	hPlatform  = "testplatform"
	hHandler   = "handler-1"
	hAsync     = 2 * time.Second  // sandbox AsyncDelay
	hOutage    = 10 * time.Second // sandbox Outage
	hReconcile = time.Second      // engine ReconcileInterval
	hDeadline  = 150 * time.Millisecond
)

var hEpoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testClock is a clock tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// gatewayMap is a trivial payment.GatewayResolver.
type gatewayMap map[string]payment.Gateway

func (m gatewayMap) Gateway(name string) (payment.Gateway, bool) {
	g, ok := m[name]
	return g, ok
}

// gwCall is one call a recordingGateway saw.
type gwCall struct {
	Method string // "execute", "status", "vault"
	Op     payment.Operation
	Vault  payment.VaultRequest
}

// recordingGateway wraps the sandbox, logging every call; execute, when
// set, replaces Execute (it may call the inner gateway itself).
type recordingGateway struct {
	inner payment.Gateway

	mu      sync.Mutex
	calls   []gwCall
	execute func(ctx context.Context, op payment.Operation) (payment.Result, error)
	status  func(ctx context.Context, op payment.Operation) (payment.Result, error)
}

func (g *recordingGateway) log(c gwCall) {
	g.mu.Lock()
	g.calls = append(g.calls, c)
	g.mu.Unlock()
}

func (g *recordingGateway) setExecute(f func(ctx context.Context, op payment.Operation) (payment.Result, error)) {
	g.mu.Lock()
	g.execute = f
	g.mu.Unlock()
}

func (g *recordingGateway) Execute(ctx context.Context, op payment.Operation) (payment.Result, error) {
	g.log(gwCall{Method: "execute", Op: op})
	g.mu.Lock()
	f := g.execute
	g.mu.Unlock()
	if f != nil {
		return f(ctx, op)
	}
	return g.inner.Execute(ctx, op)
}

func (g *recordingGateway) setStatus(f func(ctx context.Context, op payment.Operation) (payment.Result, error)) {
	g.mu.Lock()
	g.status = f
	g.mu.Unlock()
}

func (g *recordingGateway) Status(ctx context.Context, op payment.Operation) (payment.Result, error) {
	g.log(gwCall{Method: "status", Op: op})
	g.mu.Lock()
	f := g.status
	g.mu.Unlock()
	if f != nil {
		return f(ctx, op)
	}
	return g.inner.Status(ctx, op)
}

func (g *recordingGateway) Vault(ctx context.Context, req payment.VaultRequest) (payment.VaultResult, error) {
	g.log(gwCall{Method: "vault", Vault: req})
	return g.inner.Vault(ctx, req)
}

// executions returns the Execute calls of kind (all kinds when "").
func (g *recordingGateway) executions(kind payment.Kind) []payment.Operation {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []payment.Operation
	for _, c := range g.calls {
		if c.Method == "execute" && (kind == "" || c.Op.Kind == kind) {
			out = append(out, c.Op)
		}
	}
	return out
}

func (g *recordingGateway) count(method string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.calls {
		if c.Method == method {
			n++
		}
	}
	return n
}

// harness is one engine over one store directory; restart closes the store
// and opens a new store, sandbox and engine on the same directory and
// ledger, as a process restart would.
type harness struct {
	t      testing.TB
	clock  *testClock
	dir    string
	ledger string

	st  *store.Store
	sbx *sandbox.Sandbox
	gw  *recordingGateway
	eng *payment.Engine
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		t:      t,
		clock:  &testClock{now: hEpoch},
		dir:    t.TempDir(),
		ledger: filepath.Join(t.TempDir(), "ledger.log"),
	}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	h.t.Helper()
	st, err := store.Open(store.Options{Dir: h.dir, GCInterval: -1})
	if err != nil {
		h.t.Fatalf("store.Open: %v", err)
	}
	sbx, err := sandbox.New(sandbox.Config{AsyncDelay: hAsync, Outage: hOutage, Ledger: h.ledger, Now: h.clock.Now})
	if err != nil {
		st.Close()
		h.t.Fatalf("sandbox.New: %v", err)
	}
	h.st, h.sbx = st, sbx
	h.gw = &recordingGateway{inner: sbx}
	h.eng = h.newEngine(h.gw)
}

// newEngine returns a fresh engine over the harness's store (as a new
// process would have), with gw as the gateway.
func (h *harness) newEngine(gw payment.Gateway) *payment.Engine {
	eng := payment.New(payment.Config{
		Store:    h.st,
		Gateways: gatewayMap{hGateway: gw},
		Now:      h.clock.Now,
		Settings: func() payment.Settings {
			return payment.Settings{ReconcileInterval: hReconcile, MaxAge: 72 * time.Hour}
		},
	})
	eng.RegisterNotifier(hPlatform, testNotifier)
	return eng
}

func (h *harness) stop() {
	if h.sbx != nil {
		h.sbx.Close()
		h.sbx = nil
	}
	if h.st != nil {
		h.st.Close()
		h.st = nil
	}
}

func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start()
}

// answerBody is what testRender writes: enough of the verdict to compare
// answers byte for byte and to find the payment again.
type answerBody struct {
	PaymentID string `json:"payment_id,omitempty"`
	Token     string `json:"token,omitempty"`
	State     string `json:"state,omitempty"`
	ActionID  string `json:"action_id,omitempty"`
	Amount    int64  `json:"amount,omitempty"`
	Code      string `json:"code,omitempty"`
	Kind      int    `json:"kind,omitempty"`
}

var kindStatus = map[payment.ErrorKind]int{
	payment.KindInvalidRequest: 400,
	payment.KindInvalidAmount:  400,
	payment.KindNotFound:       404,
	payment.KindInvalidState:   409,
	payment.KindExceedsBalance: 422,
	payment.KindDeclined:       402,
	payment.KindUnavailable:    502,
}

// testRender is a pure function of the verdict, as the engine requires.
func testRender(v payment.Verdict) payment.Answer {
	var b answerBody
	if v.Payment != nil {
		b.PaymentID = v.Payment.ID
	}
	if v.Tx != nil {
		b.Token, b.State, b.ActionID, b.Amount = v.Tx.Token, string(v.Tx.State), v.Tx.ActionID, v.Tx.Amount
	}
	status := 200
	switch {
	case v.Err != nil:
		b.Code, b.Kind = v.Err.Code, int(v.Err.Kind)
		status = kindStatus[v.Err.Kind]
		if status == 0 {
			status = 599
		}
	case v.Tx == nil:
		status = 598 // never expected: a success without a transaction
	case v.Tx.State != payment.Succeeded:
		status = 202
	}
	body, err := json.Marshal(b)
	if err != nil {
		panic(err)
	}
	return payment.Answer{Status: status, Body: body}
}

// notification is what testNotifier renders.
type notification struct {
	PaymentID string `json:"payment_id"`
	TxID      string `json:"tx_id"`
	Kind      string `json:"kind"`
	ActionID  string `json:"action_id"`
	State     string `json:"state"`
	Code      string `json:"code,omitempty"`
}

func testNotifier(p *payment.Payment, t *payment.Transaction) []byte {
	b, err := json.Marshal(notification{
		PaymentID: p.ID, TxID: t.ID, Kind: string(t.Kind), ActionID: t.ActionID, State: string(t.State), Code: t.Code,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// result is one Do's answer, decoded.
type result struct {
	payment.Answer
	body answerBody
}

func (h *harness) do(req payment.Request) result {
	h.t.Helper()
	return h.doWith(h.eng, context.Background(), req)
}

func (h *harness) doWith(eng *payment.Engine, ctx context.Context, req payment.Request) result {
	h.t.Helper()
	r, err := tryDo(eng, ctx, req)
	if err != nil {
		h.t.Fatalf("Do(%s %s): %v", req.Kind, req.Key, err)
	}
	return r
}

// tryDo fills the request's defaults and runs it; safe from any goroutine.
func tryDo(eng *payment.Engine, ctx context.Context, req payment.Request) (result, error) {
	if req.Platform == "" {
		req.Platform = hPlatform
	}
	if req.Handler == "" {
		req.Handler = hHandler
	}
	if req.Gateway == "" {
		req.Gateway = hGateway
	}
	if req.Policy.Deadline == 0 {
		req.Policy.Deadline = hDeadline
	}
	if req.Kind == payment.Authorize && req.Currency == "" {
		req.Currency = "EUR"
	}
	ans, err := eng.Do(ctx, req, testRender)
	if err != nil {
		return result{}, err
	}
	r := result{Answer: ans}
	if err := json.Unmarshal(ans.Body, &r.body); err != nil {
		return result{}, errors.Join(errors.New("answer is not testRender's JSON"), err)
	}
	return r, nil
}

func (h *harness) authorize(key, source string, amount int64) result {
	h.t.Helper()
	return h.do(payment.Request{Kind: payment.Authorize, Key: key, SourceToken: source, Amount: amount, Currency: "EUR",
		Purchase: payment.Purchase{OrderID: "ord-" + key, OrderNumber: "42"}})
}

func (h *harness) capture(key, token string, amount int64) result {
	h.t.Helper()
	return h.do(payment.Request{Kind: payment.Capture, Key: key, Token: token, Amount: amount})
}

func (h *harness) refund(key, token string, amount int64) result {
	h.t.Helper()
	return h.do(payment.Request{Kind: payment.Refund, Key: key, Token: token, Amount: amount})
}

func (h *harness) void(key, token string) result {
	h.t.Helper()
	return h.do(payment.Request{Kind: payment.Void, Key: key, Token: token})
}

// authorized authorizes synchronously and fails the test unless it worked.
func (h *harness) authorized(key, source string, amount int64) result {
	h.t.Helper()
	r := h.authorize(key, source, amount)
	wantStatus(h.t, r, 200)
	return r
}

func (h *harness) payment(id string) *payment.Payment {
	h.t.Helper()
	var p *payment.Payment
	err := h.st.View(context.Background(), func(tx payment.Tx) error {
		var err error
		p, err = tx.Payment(id)
		return err
	})
	if err != nil {
		h.t.Fatalf("payment %s: %v", id, err)
	}
	return p
}

func (h *harness) paymentOf(token string) *payment.Payment {
	h.t.Helper()
	id, err := h.eng.PaymentByToken(context.Background(), token)
	if err != nil {
		h.t.Fatalf("PaymentByToken: %v", err)
	}
	return h.payment(id)
}

func (h *harness) tx(token string) *payment.Transaction {
	h.t.Helper()
	t := h.paymentOf(token).Tx(token)
	if t == nil {
		h.t.Fatalf("no transaction with token %s", token)
	}
	return t
}

// record returns the idempotency record of key, nil when there is none.
func (h *harness) record(key string) *payment.IdempotencyRecord {
	h.t.Helper()
	var rec *payment.IdempotencyRecord
	err := h.st.View(context.Background(), func(tx payment.Tx) error {
		r, err := tx.Idempotency(key)
		if errors.Is(err, payment.ErrNotFound) {
			return nil
		}
		rec = r
		return err
	})
	if err != nil {
		h.t.Fatalf("idempotency record %s: %v", key, err)
	}
	return rec
}

func (h *harness) messages() []payment.Message {
	h.t.Helper()
	ms, err := h.st.PendingMessages(1000)
	if err != nil {
		h.t.Fatalf("PendingMessages: %v", err)
	}
	return ms
}

func (h *harness) ledgerEntries() []sandbox.Entry {
	h.t.Helper()
	es, err := sandbox.ReadLedger(h.ledger)
	if err != nil {
		h.t.Fatalf("ReadLedger: %v", err)
	}
	return es
}

// ledgerOps returns the ledger's entries of operation op.
func (h *harness) ledgerOps(op string) []sandbox.Entry {
	h.t.Helper()
	var out []sandbox.Entry
	for _, e := range h.ledgerEntries() {
		if e.Op == op {
			out = append(out, e)
		}
	}
	return out
}

func (h *harness) open() []string {
	h.t.Helper()
	ids, err := h.st.OpenPayments(context.Background())
	if err != nil {
		h.t.Fatalf("OpenPayments: %v", err)
	}
	return ids
}

func (h *harness) isOpen(id string) bool {
	h.t.Helper()
	return slices.Contains(h.open(), id)
}

// reconcileAfter moves the clock by d and runs one reconcile pass.
func (h *harness) reconcileAfter(d time.Duration) {
	h.t.Helper()
	h.clock.Advance(d)
	h.eng.ReconcileOnce(context.Background())
}

func wantStatus(t testing.TB, r result, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
}

func wantRefusal(t testing.TB, r result, kind payment.ErrorKind, code string) {
	t.Helper()
	if r.body.Kind != int(kind) || r.body.Code != code {
		t.Fatalf("refusal kind %d code %q, want kind %d code %q; status %d body %s",
			r.body.Kind, r.body.Code, kind, code, r.Status, r.Body)
	}
	if want := kindStatus[kind]; r.Status != want {
		t.Fatalf("status %d, want %d; body %s", r.Status, want, r.Body)
	}
}

// wantEvents checks p's event types, in order, numbered 1, 2, ... with
// times that never go back.
func wantEvents(t testing.TB, p *payment.Payment, want ...payment.EventType) {
	t.Helper()
	var got []payment.EventType
	for _, e := range p.Events {
		got = append(got, e.Type)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i, e := range p.Events {
		if e.Sequence != int64(i+1) {
			t.Errorf("event %d (%s) has Sequence %d, want %d", i, e.Type, e.Sequence, i+1)
		}
		if e.ID == "" || e.TxID == "" || p.TxByID(e.TxID) == nil {
			t.Errorf("event %d (%s): id %q names transaction %q, which the payment does not have", i, e.Type, e.ID, e.TxID)
		}
		if i > 0 && e.OccurredAt.Before(p.Events[i-1].OccurredAt) {
			t.Errorf("event %d (%s) occurred before the event it follows", i, e.Type)
		}
	}
}

// wantMessages checks the outbox holds exactly want (bodies, in order) and
// that every message is addressed to the test platform's handler.
func (h *harness) wantMessages(want ...[]byte) []payment.Message {
	h.t.Helper()
	ms := h.messages()
	if len(ms) != len(want) {
		var bodies []string
		for _, m := range ms {
			bodies = append(bodies, string(m.Body))
		}
		h.t.Fatalf("%d outbox messages %q, want %d", len(ms), bodies, len(want))
	}
	for i, m := range ms {
		if string(m.Body) != string(want[i]) {
			h.t.Errorf("message %d body\n %s\nwant\n %s", i, m.Body, want[i])
		}
		if m.Kind != hPlatform || m.Target != hHandler || m.PaymentID == "" || m.Seq == 0 {
			h.t.Errorf("message %d addressed kind %q target %q payment %q seq %d", i, m.Kind, m.Target, m.PaymentID, m.Seq)
		}
	}
	return ms
}

func hasPrefix(t testing.TB, what, s, prefix string) {
	t.Helper()
	if !strings.HasPrefix(s, prefix) {
		t.Errorf("%s %q does not begin with %q", what, s, prefix)
	}
}
