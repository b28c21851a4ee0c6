package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/internal/oftest"
	"github.com/paybridge/caddy-paybridge/signature"
)

const (
	ofKey   = "of_test_key_1"
	ofWhsec = "whsec_of_test"
)

// openfrontStub is Openfront as far as paybridge can tell: its GraphQL
// endpoint, which checks the relay's mutation and variables and then does
// what handlePaymentProviderWebhook's code does: call handle-webhook with
// {provider, event, headers}, and on payment_intent.succeeded call
// capture-payment with resource.id and resource.amount.
type openfrontStub struct {
	t      *testing.T
	srv    *httptest.Server
	fail   atomic.Int32 // answer this many relays with GraphQL errors first
	mu     sync.Mutex
	events []map[string]any // every relayed event, in arrival order
	ok     []map[string]any // events answered success
	bad    []string         // what was wrong with a relay request
}

func newOpenfrontStub(t *testing.T) *openfrontStub {
	s := &openfrontStub{t: t}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *openfrontStub) URL() string { return s.srv.URL + "/api/graphql" }

func (s *openfrontStub) problem(w http.ResponseWriter, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.bad = append(s.bad, msg)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"data":null,"errors":[{"message":%q}]}`, msg)
}

func (s *openfrontStub) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Query     string `json:"query"`
		Variables struct {
			ProviderID string          `json:"providerId"`
			Event      json.RawMessage `json:"event"`
			Headers    map[string]any  `json:"headers"`
		} `json:"variables"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.problem(w, "not a GraphQL request: %v", err)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		s.problem(w, "%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		return
	}
	if !strings.HasPrefix(req.Query, "mutation") ||
		!strings.Contains(req.Query, "$providerId: ID!, $event: JSON!, $headers: JSON!") ||
		!strings.Contains(req.Query, "handlePaymentProviderWebhook(providerId: $providerId, event: $event, headers: $headers) { success") {
		s.problem(w, "unexpected query %q", req.Query)
		return
	}
	if req.Variables.ProviderID != "prov_cm9x1" {
		s.problem(w, "providerId %q", req.Variables.ProviderID)
		return
	}
	var event map[string]any
	if err := json.Unmarshal(req.Variables.Event, &event); err != nil {
		s.problem(w, "event: %v", err)
		return
	}
	s.mu.Lock()
	s.events = append(s.events, event)
	s.mu.Unlock()
	if s.fail.Load() > 0 {
		s.fail.Add(-1)
		s.problem(w, "Openfront is having a bad day")
		return
	}
	// Openfront's mutation resolves the provider by id and calls its
	// handle-webhook; the event bytes are compact, as JSON.stringify
	// writes them (checked against Node in the handlers tests).
	hook := do(s.t, http.MethodPost, "/openfront/handle-webhook", oftest.Webhook(ofKey, req.Variables.Event, req.Variables.Headers), nil)
	if hook.Status != http.StatusOK {
		s.problem(w, "handle-webhook answered %s", hook)
		return
	}
	var verdict struct {
		Type     string `json:"type"`
		Resource struct {
			ID     string `json:"id"`
			Amount int64  `json:"amount"`
		} `json:"resource"`
	}
	_ = json.Unmarshal(hook.Body, &verdict)
	if strings.Contains(verdict.Type, "payment_intent.succeeded") {
		// The capture happens while this relay request is still open: the
		// relay must hold nothing the capture needs.
		capture := do(s.t, http.MethodPost, "/openfront/capture-payment", oftest.Capture(ofKey, verdict.Resource.ID, verdict.Resource.Amount), nil)
		if capture.Status != http.StatusOK {
			s.problem(w, "capture-payment answered %s", capture)
			return
		}
	}
	s.mu.Lock()
	s.ok = append(s.ok, event)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"data":{"handlePaymentProviderWebhook":{"success":true,"message":null,"error":null}}}`))
}

// relayed returns the types of the events relayed (and answered success)
// for one payment, in order.
func (s *openfrontStub) relayed(paymentID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, ev := range s.ok {
		if data, _ := ev["data"].(map[string]any); data != nil && data["payment_id"] == paymentID {
			out = append(out, ev["type"].(string))
		}
	}
	return out
}

func (s *openfrontStub) problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bad...)
}

const ofConfig = `{
	admin localhost:2999
	paybridge {
		storage %s
		reconcile_interval 50ms
		retry_backoff 50ms 200ms
		gateway default sandbox {
			async_delay 200ms
			outage 600ms
			public_url http://localhost:9080/psp/default
			webhook_secret %s
			ledger %s
		}
	}
}

http://localhost:9080 {
	handle /openfront/* {
		paybridge openfront {
			api_key %s of_test_key_previous
			dashboard_url https://dashboard.example/payments/{payment_id}
			deadline 300ms
			relay {
				graphql_url %s
				provider_id prov_cm9x1
			}
		}
	}
	handle /psp/default/* {
		paybridge gateway default
	}
}
`

type ofEnv struct {
	t      *testing.T
	stub   *openfrontStub
	ledger string
}

func newOfEnv(t *testing.T) *ofEnv {
	t.Helper()
	dir := t.TempDir()
	e := &ofEnv{t: t, stub: newOpenfrontStub(t), ledger: filepath.Join(dir, "ledger")}
	startCaddy(t, fmt.Sprintf(ofConfig, filepath.Join(dir, "store"), ofWhsec, e.ledger, ofKey, e.stub.URL()))
	return e
}

func (e *ofEnv) call(fn string, body []byte) response {
	e.t.Helper()
	return do(e.t, http.MethodPost, "/openfront/"+fn, body, map[string]string{"Content-Type": "application/json"})
}

// confirm is the customer paying on the sandbox's checkout with token.
func (e *ofEnv) confirm(paymentID, token string) response {
	e.t.Helper()
	return do(e.t, http.MethodPost, "/psp/default/checkout/"+paymentID+"/confirm",
		[]byte(`{"token":"`+token+`"}`), map[string]string{"Content-Type": "application/json"})
}

// create opens a session for cart and returns its payment id.
func (e *ofEnv) create(cart string, amount int64) string {
	e.t.Helper()
	r := e.call("create-payment", oftest.CheckoutCreate(ofKey, cart, amount, "eur"))
	if r.Status != http.StatusOK {
		e.t.Fatalf("create-payment: %s", r)
	}
	return str(e.t, decodeJSON(e.t, r.Body), "paymentId")
}

// paid creates a session and pays it with token, waiting until it is
// authorized (or the wait ends).
func (e *ofEnv) paid(cart string, amount int64, token string) string {
	e.t.Helper()
	id := e.create(cart, amount)
	if r := e.confirm(id, token); r.Status != http.StatusOK && r.Status != http.StatusAccepted {
		e.t.Fatalf("confirm: %s", r)
	}
	e.waitStatus(id, "authorized", "captured")
	return id
}

func (e *ofEnv) status(id string) map[string]any {
	e.t.Helper()
	r := e.call("get-payment-status", oftest.Status(ofKey, id))
	if r.Status != http.StatusOK {
		e.t.Fatalf("get-payment-status: %s", r)
	}
	return decodeJSON(e.t, r.Body)
}

func (e *ofEnv) waitStatus(id string, want ...string) map[string]any {
	e.t.Helper()
	var last map[string]any
	ok := waitUntil(5*time.Second, func() bool {
		last = e.status(id)
		for _, w := range want {
			if last["status"] == w {
				return true
			}
		}
		return false
	})
	if !ok {
		e.t.Fatalf("payment %s: status %v, want one of %v", id, last, want)
	}
	return last
}

func (e *ofEnv) waitRelayed(id string, want ...string) {
	e.t.Helper()
	ok := waitUntil(5*time.Second, func() bool { return strings.Join(e.stub.relayed(id), ",") == strings.Join(want, ",") })
	if !ok {
		e.t.Fatalf("relayed for %s: %v, want %v (problems: %v)", id, e.stub.relayed(id), want, e.stub.problems())
	}
}

func fieldsOf(t *testing.T, r response, want ...string) map[string]any {
	t.Helper()
	m := decodeJSON(t, r.Body)
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Fatalf("answer lacks %q: %s", k, r.Body)
		}
	}
	return m
}

// TestOpenfrontCheckoutToRefund is a whole Openfront payment: the session,
// the customer paying on the checkout page, the relay to Openfront's
// GraphQL (which captures, as its code does), then refunds, status and link.
func TestOpenfrontCheckoutToRefund(t *testing.T) {
	e := newOfEnv(t)

	// create-payment, real checkout shape: documented and flat fields.
	body := oftest.CheckoutCreate(ofKey, "cart_flow", 12900, "eur")
	r := e.call("create-payment", body)
	if r.Status != http.StatusOK {
		t.Fatal(r)
	}
	c := fieldsOf(t, r, "sessionData", "paymentId", "clientSecret", "status", "amount", "currency", "checkoutUrl")
	id := str(t, c, "paymentId")
	session := c["sessionData"].(map[string]any)
	if session["paymentId"] != id || session["clientSecret"] != c["clientSecret"] || c["status"] != "pending" ||
		num(t, c, "amount") != 12900 || c["currency"] != "EUR" || c["checkoutUrl"] != "http://localhost:9080/psp/default/checkout/"+id {
		t.Fatalf("create answer %s", r.Body)
	}
	// The same cart, amount and currency is the same session, byte for byte.
	if again := e.call("create-payment", body); !bytes.Equal(again.Body, r.Body) {
		t.Fatalf("repeat create: %s\nfirst: %s", again.Body, r.Body)
	}
	// Another amount is another session.
	if other := e.create("cart_flow", 13900); other == id {
		t.Fatal("a changed cart total reused the session")
	}
	if st := e.status(id); st["status"] != "pending" {
		t.Fatalf("unpaid session status %v", st)
	}
	if r := e.call("capture-payment", oftest.Capture(ofKey, id, 12900)); r.Status != http.StatusConflict {
		t.Fatalf("capture before the customer paid: %s, want 409", r)
	}

	// The customer pays; Openfront hears payment_intent.succeeded through
	// the relay, calls handle-webhook and captures.
	if r := e.confirm(id, "tok_visa_of1"); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"outcome":"authorized"`) {
		t.Fatalf("confirm: %s", r)
	}
	e.waitRelayed(id, "payment_intent.succeeded", "payment.captured")
	st := e.waitStatus(id, "captured")
	if num(t, st, "amount") != 12900 || st["currency"] != "EUR" || str(t, st, "lastUpdated") == "" {
		t.Fatalf("status %v", st)
	}
	// Openfront hearing the event twice captures twice: the same capture.
	c1 := e.call("capture-payment", oftest.Capture(ofKey, id, 12900))
	c2 := e.call("capture-payment", oftest.Capture(ofKey, id, 12900))
	cap1 := fieldsOf(t, c1, "success", "transactionId", "capturedAmount", "status", "amount", "data")
	if c1.Status != 200 || cap1["success"] != true || cap1["status"] != "captured" || num(t, cap1, "capturedAmount") != 12900 ||
		num(t, cap1, "amount") != 12900 || !bytes.Equal(c1.Body, c2.Body) {
		t.Fatalf("capture of a captured payment: %s / %s", c1, c2)
	}

	// Refunds: keyed ones are idempotent, unkeyed ones are each new, and
	// none goes beyond the capture.
	keyed := func(key string, amount int64) response {
		return e.call("refund-payment", []byte(fmt.Sprintf(`{"provider":{"credentials":{"apiKey":%q}},"paymentId":%q,"amount":%d,"reason":"requested_by_customer","idempotencyKey":%q}`, ofKey, id, amount, key)))
	}
	k1, k2 := keyed("rf-1", 2000), keyed("rf-1", 2000)
	rf := fieldsOf(t, k1, "success", "refundId", "refundedAmount", "status", "amount", "data")
	if k1.Status != 200 || rf["success"] != true || num(t, rf, "refundedAmount") != 2000 || !bytes.Equal(k1.Body, k2.Body) {
		t.Fatalf("keyed refund: %s / %s", k1, k2)
	}
	// The key reused for another amount is refused in Openfront's error
	// format, and refunds nothing (the totals below would be off by 3000).
	reused := keyed("rf-1", 5000)
	if reused.Status != http.StatusBadRequest || !strings.Contains(str(t, decodeJSON(t, reused.Body), "error"), "2000") {
		t.Fatalf("refund key reused for another amount: %s, want 400 naming the first call's 2000", reused)
	}
	// The Idempotency-Key header works like the body field.
	h1 := do(t, http.MethodPost, "/openfront/refund-payment", oftest.Refund(ofKey, id, 500), map[string]string{"Idempotency-Key": "hdr-1"})
	h2 := do(t, http.MethodPost, "/openfront/refund-payment", oftest.Refund(ofKey, id, 500), map[string]string{"Idempotency-Key": "hdr-1"})
	if h1.Status != 200 || !bytes.Equal(h1.Body, h2.Body) {
		t.Fatalf("refund keyed by header: %s / %s", h1, h2)
	}
	u1 := e.call("refund-payment", oftest.Refund(ofKey, id, 1000))
	u2 := e.call("refund-payment", oftest.DocumentedRefund(ofKey, id, 1000, "damaged"))
	if u1.Status != 200 || u2.Status != 200 || str(t, decodeJSON(t, u1.Body), "refundId") == str(t, decodeJSON(t, u2.Body), "refundId") {
		t.Fatalf("unkeyed refunds: %s / %s", u1, u2)
	}
	over := e.call("refund-payment", oftest.Refund(ofKey, id, 9000))
	if over.Status != http.StatusUnprocessableEntity || !strings.Contains(str(t, decodeJSON(t, over.Body), "error"), "8400") {
		t.Fatalf("refund over the balance: %s, want 422 naming the 8400 left", over)
	}
	st = e.status(id)
	if st["status"] != "captured" || num(t, st, "refundedAmount") != 4500 || num(t, st, "capturedAmount") != 12900 {
		t.Fatalf("status after refunds %v", st)
	}
	e.waitRelayed(id, "payment_intent.succeeded", "payment.captured", "payment.refunded", "payment.refunded", "payment.refunded", "payment.refunded")

	link := e.call("generate-payment-link", oftest.Link(ofKey, id))
	if link.Status != 200 || str(t, decodeJSON(t, link.Body), "url") != "https://dashboard.example/payments/"+id {
		t.Fatalf("link: %s", link)
	}
	if p := e.stub.problems(); len(p) > 0 {
		t.Fatalf("the GraphQL stub saw bad relays: %v", p)
	}
}

func TestOpenfrontOtherShapes(t *testing.T) {
	e := newOfEnv(t)
	inv := e.call("create-payment", oftest.InvoiceCreate(ofKey, "inv_1", 500, "jpy"))
	doc := e.call("create-payment", oftest.DocumentedCreate(ofKey, "cart_doc", 1999, "USD"))
	for _, c := range []struct {
		r        response
		amount   int64
		currency string
	}{{inv, 500, "JPY"}, {doc, 1999, "USD"}} {
		if c.r.Status != 200 {
			t.Fatal(c.r)
		}
		m := fieldsOf(t, c.r, "sessionData", "paymentId", "clientSecret", "status", "amount", "currency", "checkoutUrl")
		if num(t, m, "amount") != c.amount || m["currency"] != c.currency {
			t.Fatalf("%s", c.r.Body)
		}
	}
	// The page shows the amount in major units.
	id := str(t, decodeJSON(t, inv.Body), "paymentId")
	page := do(t, http.MethodGet, "/psp/default/checkout/"+id, nil, nil)
	if page.Status != 200 || !strings.Contains(string(page.Body), "500 JPY") || strings.Contains(string(page.Body), "<script") {
		t.Fatalf("checkout page: %s", page)
	}
}

func TestOpenfrontDeclinesAreAnswers(t *testing.T) {
	e := newOfEnv(t)

	// A declined card: Openfront hears payment_intent.payment_failed; the
	// customer may try again on the same page, with another card.
	id := e.create("cart_decline", 5000)
	if r := e.confirm(id, "tok_decline"); r.Status != http.StatusPaymentRequired || !strings.Contains(string(r.Body), `"code":"card_declined"`) {
		t.Fatalf("declined confirm: %s", r)
	}
	if st := e.status(id); st["status"] != "failed" {
		t.Fatalf("status %v", st)
	}
	if r := e.confirm(id, "tok_visa_retry"); r.Status != http.StatusOK {
		t.Fatalf("second try: %s", r)
	}
	if r := e.confirm(id, "tok_visa_third"); r.Status != http.StatusConflict {
		t.Fatalf("confirming an authorized payment again: %s, want 409", r)
	}
	e.waitRelayed(id, "payment_intent.payment_failed", "payment_intent.succeeded", "payment.captured")

	// A capture or refund the PSP declines is a 200 with success:false.
	capFail := e.create("cart_capfail", 3000)
	e.confirm(capFail, "tok_capture_fail_1")
	e.waitStatus(capFail, "authorized")
	r := e.call("capture-payment", oftest.Capture(ofKey, capFail, 3000))
	m := decodeJSON(t, r.Body)
	if r.Status != 200 || m["success"] != false || m["status"] != "failed" || str(t, m, "error") == "" {
		t.Fatalf("declined capture: %s", r)
	}
	refFail := e.paid("cart_reffail", 3000, "tok_refund_fail_1")
	e.waitStatus(refFail, "captured")
	r = e.call("refund-payment", oftest.Refund(ofKey, refFail, 1000))
	m = decodeJSON(t, r.Body)
	if r.Status != 200 || m["success"] != false || m["status"] != "failed" {
		t.Fatalf("declined refund: %s", r)
	}

	// A caller's mistakes are HTTP errors, each {error}.
	for _, c := range []struct {
		name   string
		fn     string
		body   []byte
		status int
	}{
		{"unknown payment", "capture-payment", oftest.Capture(ofKey, "pay_nope", 100), 404},
		{"no paymentId", "get-payment-status", []byte(`{"provider":{"credentials":{"apiKey":"` + ofKey + `"}}}`), 400},
		{"fractional amount", "refund-payment", []byte(`{"provider":{"credentials":{"apiKey":"` + ofKey + `"}},"paymentId":"` + refFail + `","amount":10.5}`), 400},
		{"no cart", "create-payment", []byte(`{"provider":{"credentials":{"apiKey":"` + ofKey + `"}},"amount":100,"currency":"EUR"}`), 400},
		{"unknown currency", "create-payment", oftest.CheckoutCreate(ofKey, "cart_x", 100, "xyz"), 400},
		{"wrong key", "get-payment-status", oftest.Status("of_wrong", refFail), 401},
		{"capture over the authorization", "capture-payment", oftest.Capture(ofKey, capFail, 3001), 422},
	} {
		r := e.call(c.fn, c.body)
		if r.Status != c.status || str(t, decodeJSON(t, r.Body), "error") == "" {
			t.Errorf("%s: %s, want %d {error}", c.name, r, c.status)
		}
	}
	if r := do(t, http.MethodGet, "/openfront/create-payment", nil, nil); r.Status != 405 {
		t.Errorf("GET: %s", r)
	}
}

func TestOpenfrontUnreachablePSPIs502(t *testing.T) {
	e := newOfEnv(t)
	e.stub.fail.Store(1 << 20) // Openfront would capture too; this test does
	// tok_outage fails every attempt for 600ms after each operation is
	// created: the checkout's authorization (4s deadline) waits it out...
	id := e.create("cart_outage", 4000)
	if r := e.confirm(id, "tok_outage_1"); r.Status != http.StatusOK && r.Status != http.StatusAccepted {
		t.Fatalf("confirm during an outage: %s", r)
	}
	e.waitStatus(id, "authorized", "captured")
	// ...then a capture, with a 300ms deadline, meets its own outage.
	before := time.Now()
	r := e.call("capture-payment", oftest.Capture(ofKey, id, 1000))
	if r.Status != http.StatusBadGateway || str(t, decodeJSON(t, r.Body), "error") == "" || time.Since(before) > 2*time.Second {
		t.Fatalf("capture while the PSP is unreachable: %s after %s, want a prompt 502 {error}", r, time.Since(before))
	}
}

func TestOpenfrontRelayRetriesUntilOpenfrontAccepts(t *testing.T) {
	e := newOfEnv(t)
	e.stub.fail.Store(3) // three GraphQL errors (a 200 with errors) first
	id := e.create("cart_retry", 2500)
	e.confirm(id, "tok_visa_retry")
	e.waitRelayed(id, "payment_intent.succeeded", "payment.captured")
	e.stub.mu.Lock()
	attempts := len(e.stub.events)
	e.stub.mu.Unlock()
	if attempts < 5 {
		t.Fatalf("%d relay requests; want 3 refused + 2 accepted", attempts)
	}
	// Every attempt carried the same event (id and bytes).
	e.stub.mu.Lock()
	first := e.stub.events[0]["id"]
	for _, ev := range e.stub.events[:4] {
		if ev["id"] != first {
			t.Errorf("retries carried different events: %v vs %v", ev["id"], first)
		}
	}
	e.stub.mu.Unlock()
}

func TestOpenfrontConcurrentCapturesAndRefunds(t *testing.T) {
	e := newOfEnv(t)
	e.stub.fail.Store(1 << 20) // keep Openfront from capturing on its own
	id := e.paid("cart_race", 10000, "tok_visa_race")

	// 20 different partial captures of 1000..1019 on 10000: whatever the
	// interleaving, the captured total stays within the authorization.
	var wg sync.WaitGroup
	var captured atomic.Int64
	statuses := make([]int, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			amount := int64(1000 + i)
			r := e.call("capture-payment", oftest.Capture(ofKey, id, amount))
			statuses[i] = r.Status
			if r.Status == 200 && decodeJSON(t, r.Body)["success"] == true {
				captured.Add(amount)
			}
		}()
	}
	wg.Wait()
	st := e.status(id)
	if got := num(t, st, "capturedAmount"); got != captured.Load() || got > 10000 || got < 9000 {
		t.Fatalf("captured %d (answers add up to %d), authorized 10000; statuses %v", got, captured.Load(), statuses)
	}
	// 20 unkeyed refunds of 1000 against what was captured: exactly as many
	// succeed as fit.
	total := num(t, st, "capturedAmount")
	var ok atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.call("refund-payment", oftest.Refund(ofKey, id, 1000))
			if r.Status == 200 {
				ok.Add(1)
			} else if r.Status != http.StatusUnprocessableEntity {
				t.Errorf("refund: %s", r)
			}
		}()
	}
	wg.Wait()
	st = e.status(id)
	if refunded := num(t, st, "refundedAmount"); refunded != ok.Load()*1000 || refunded > total {
		t.Fatalf("refunded %d in %d answers of 200, captured %d", refunded, ok.Load(), total)
	}
	ledgerKeysUnique(t, readLedger(t, e.ledger))
}

// TestOpenfrontRelayEventSignature checks the relayed event as Openfront
// receives it: signed over its exact bytes with the gateway's secret.
func TestOpenfrontRelayEventSignature(t *testing.T) {
	var mu sync.Mutex
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = b
		mu.Unlock()
		_, _ = w.Write([]byte(`{"data":{"handlePaymentProviderWebhook":{"success":true}}}`))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	startCaddy(t, fmt.Sprintf(ofConfig, filepath.Join(dir, "store"), ofWhsec, filepath.Join(dir, "ledger"), ofKey, srv.URL))
	e := &ofEnv{t: t}
	id := e.create("cart_sig", 700)
	e.confirm(id, "tok_visa_sig")
	if !waitUntil(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return got != nil }) {
		t.Fatal("nothing relayed")
	}
	mu.Lock()
	defer mu.Unlock()
	var req struct {
		Variables struct {
			Event   json.RawMessage   `json:"event"`
			Headers map[string]string `json:"headers"`
		} `json:"variables"`
	}
	if err := json.Unmarshal(got, &req); err != nil {
		t.Fatal(err)
	}
	if err := signature.Verify(req.Variables.Headers["paybridge-signature"], req.Variables.Event, [][]byte{[]byte(ofWhsec)}, time.Now(), time.Minute); err != nil {
		t.Fatalf("relayed event signature: %v\n%s", err, got)
	}
	if !strings.Contains(string(req.Variables.Event), `"payment_id":"`+id+`"`) || !strings.Contains(string(req.Variables.Event), `"cartId":"cart_sig"`) {
		t.Fatalf("event %s", req.Variables.Event)
	}
}

func ofConfigWith(t *testing.T, gateway, options string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	paybridge {
		storage %s
		%s
	}
}

http://localhost:9080 {
	handle /openfront/* {
		paybridge openfront {
			%s
		}
	}
}
`, filepath.Join(t.TempDir(), "store"), gateway, options)
}

const ofGateway = "gateway default sandbox {\n\t\t\tpublic_url http://localhost:9080/psp/default\n\t\t\twebhook_secret whsec\n\t\t}"

func TestOpenfrontConfigErrors(t *testing.T) {
	t.Setenv("PAYBRIDGE_TEST_UNSET_KEY", "")
	for _, c := range []struct {
		name    string
		gateway string
		options string
		wants   []string
	}{
		{"no api_key", ofGateway, "dashboard_url https://d.example/{payment_id}", []string{"api_key", "Caddyfile:"}},
		{"api_key from an unset variable", ofGateway, "api_key {env.PAYBRIDGE_TEST_UNSET_KEY}", []string{"api_key"}},
		{"unknown option", ofGateway, "api_key k\n\t\t\tsparkle 1", []string{"sparkle", "Caddyfile:"}},
		{"no payment page", "gateway default sandbox", "api_key k", []string{"public_url"}},
		{"relay without webhook_secret", "gateway default sandbox {\n\t\t\tpublic_url http://localhost:9080/psp\n\t\t}",
			"api_key k\n\t\t\trelay {\n\t\t\t\tgraphql_url http://127.0.0.1:1/api/graphql\n\t\t\t\tprovider_id p\n\t\t\t}", []string{"webhook_secret"}},
		{"relay without provider_id", ofGateway, "api_key k\n\t\t\trelay {\n\t\t\t\tgraphql_url http://127.0.0.1:1/api/graphql\n\t\t\t}", []string{"provider_id"}},
		{"relay with a bad URL", ofGateway, "api_key k\n\t\t\trelay {\n\t\t\t\tgraphql_url shop.example.com\n\t\t\t\tprovider_id p\n\t\t\t}", []string{"graphql_url"}},
		{"unknown relay option", ofGateway, "api_key k\n\t\t\trelay {\n\t\t\t\tretries 3\n\t\t\t}", []string{"retries"}},
	} {
		t.Run(c.name, func(t *testing.T) { assertLoadError(t, ofConfigWith(t, c.gateway, c.options), c.wants...) })
	}
}

func TestOpenfrontNamesAreUniqueAcrossPlatforms(t *testing.T) {
	cfg := fmt.Sprintf(`{
	admin localhost:2999
	paybridge {
		storage %s
		%s
	}
}

http://localhost:9080 {
	handle /a/* {
		paybridge openfront {
			name shop
			api_key k
		}
	}
	handle /b/* {
		paybridge commercelayer {
			name shop
			shared_secret s
			callback_url http://127.0.0.1:1/cb
		}
	}
}
`, filepath.Join(t.TempDir(), "store"), ofGateway)
	assertLoadError(t, cfg, "shop")
}

// TestOpenfrontDashboardTemplateSurvivesCaddy checks that {payment_id} is
// substituted by paybridge, not blanked by Caddy's replacer, also through
// the adapted JSON.
func TestOpenfrontDashboardTemplateSurvivesCaddy(t *testing.T) {
	t.Setenv("PAYBRIDGE_TEST_DASH", "https://dash.example")
	cfg := ofConfigWith(t, ofGateway, "api_key "+ofKey+"\n\t\t\tdashboard_url {env.PAYBRIDGE_TEST_DASH}/p/{payment_id}?view=full")
	startCaddy(t, cfg)
	e := &ofEnv{t: t}
	id := e.create("cart_dash", 100)
	r := e.call("generate-payment-link", oftest.Link(ofKey, id))
	if got := str(t, decodeJSON(t, r.Body), "url"); got != "https://dash.example/p/"+id+"?view=full" {
		t.Fatalf("link %q", got)
	}
}
