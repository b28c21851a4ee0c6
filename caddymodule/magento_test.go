package caddymodule

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	mibSecret       = "mib_secret_1"
	mibClientID     = "paybridge-client"
	mibClientSecret = "client-secret-1"
	mibPath         = "/mib"
)

// fakeBus is Magento's integration bus on loopback, as its public mocks
// behave: an OAuth token endpoint (client credentials), the registration
// method at the bus URL, and OMS's delegate URL, which only takes calls
// with a live bearer token.
type fakeBus struct {
	t   *testing.T
	srv *httptest.Server

	mu            sync.Mutex
	tokens        map[string]bool // issued and not revoked
	tokensIssued  int
	registrations []map[string]any
	notifications []busCall // accepted by the delegate
	refusals      int       // delegate calls refused

	refuse    atomic.Int32 // refuse this many delegate calls (503)
	tokenDown atomic.Bool  // the token endpoint answers 503
	anonymous atomic.Int32 // delegate calls without an Authorization header
	rpcErrors atomic.Int32 // then answer this many with a JSON-RPC error
}

type busCall struct {
	Bearer string
	Body   map[string]any
	Raw    []byte
}

func newFakeBus(t *testing.T) *fakeBus {
	b := &fakeBus{t: t, tokens: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", b.token)
	mux.HandleFunc("POST /delegate/oms", b.delegate)
	mux.HandleFunc("POST /{$}", b.register)
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *fakeBus) token(w http.ResponseWriter, r *http.Request) {
	if b.tokenDown.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		_ = r.ParseForm()
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	_ = r.ParseForm()
	if id != mibClientID || secret != mibClientSecret || r.PostForm.Get("grant_type") != "client_credentials" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	b.mu.Lock()
	b.tokensIssued++
	tok := fmt.Sprintf("access-%d", b.tokensIssued)
	b.tokens[tok] = true
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","expires_in":3600}`, tok)
}

// authorized checks the bearer token.
func (b *fakeBus) authorized(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	b.mu.Lock()
	defer b.mu.Unlock()
	return tok, ok && b.tokens[tok]
}

// expireTokens makes every token issued so far invalid, as if they had
// expired early at the bus.
func (b *fakeBus) expireTokens() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = map[string]bool{}
}

func (b *fakeBus) register(w http.ResponseWriter, r *http.Request) {
	if _, ok := b.authorized(r); !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params map[string]any  `json:"params"`
	}
	body, _ := io.ReadAll(r.Body)
	if json.Unmarshal(body, &req) != nil || req.Method != "magento.service_bus.remote.register" {
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"method not found"}}`)
		return
	}
	b.mu.Lock()
	b.registrations = append(b.registrations, req.Params)
	b.mu.Unlock()
	id, _ := req.Params["id"].(string)
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"remote_endpoint":{"id":%q,"peer_url":%q,"remote_url":%q,"delegate_url":%q,"contracts":[],"subscribes":[],"labels":[]}}}`,
		req.ID, id, req.Params["url"], b.srv.URL+"/remote/"+id, b.srv.URL+"/delegate/"+id)
}

func (b *fakeBus) delegate(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "" {
		b.anonymous.Add(1)
	}
	tok, ok := b.authorized(r)
	raw, _ := io.ReadAll(r.Body)
	if !ok {
		b.mu.Lock()
		b.refusals++
		b.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if b.refuse.Load() > 0 {
		b.refuse.Add(-1)
		b.mu.Lock()
		b.refusals++
		b.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if b.rpcErrors.Load() > 0 {
		b.rpcErrors.Add(-1)
		b.mu.Lock()
		b.refusals++
		b.mu.Unlock()
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%q,"error":{"code":-32000,"message":"OMS is busy"}}`, body["id"])
		return
	}
	b.mu.Lock()
	b.notifications = append(b.notifications, busCall{Bearer: tok, Body: body, Raw: raw})
	b.mu.Unlock()
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%q,"result":{}}`, body["id"])
}

// notificationsFor returns the accepted notifications whose payment has
// operation_reference ref, in arrival order.
func (b *fakeBus) notificationsFor(ref string) []busCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []busCall
	for _, n := range b.notifications {
		params, _ := n.Body["params"].(map[string]any)
		p, _ := params["payment"].(map[string]any)
		if p["operation_reference"] == ref {
			out = append(out, n)
		}
	}
	return out
}

const mibConfig = `{
	admin localhost:2999
	paybridge {
		storage %s
		reconcile_interval 50ms
		retry_backoff 50ms 200ms
		gateway default sandbox {
			async_delay 200ms
			outage 600ms
			ledger %s
		}
	}
}

http://localhost:9080 {
	handle /mib {
		paybridge magento {
			endpoint_name acme_payments
			secret ` + mibSecret + ` mib_secret_previous
			bus_url %s
			oauth_token_url %s/oauth/token
			client_id ` + mibClientID + `
			client_secret ` + mibClientSecret + `
			public_url http://localhost:9080/mib
			deadline 300ms
			%s
		}
	}
}
`

type mibEnv struct {
	t       *testing.T
	bus     *fakeBus
	ledger  string
	storage string
	extra   string
	seq     atomic.Int64
}

func newMibEnv(t *testing.T, extra string) *mibEnv {
	t.Helper()
	dir := t.TempDir()
	e := &mibEnv{t: t, bus: newFakeBus(t), ledger: filepath.Join(dir, "ledger"), storage: filepath.Join(dir, "store"), extra: extra}
	startCaddy(t, e.config())
	return e
}

func (e *mibEnv) config() string {
	return fmt.Sprintf(mibConfig, e.storage, e.ledger, e.bus.srv.URL, e.bus.srv.URL, e.extra)
}

func mibSign(secret string, body []byte) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(body)
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}

// mibPayment is a payment struct as OMS sends it; amount is the literal.
func mibPayment(gatewayKey, amount, currency, ref string) map[string]any {
	return map[string]any{
		"gateway": "paybridge", "gateway_account": "acme", "gateway_key": gatewayKey,
		"amount": json.RawMessage(amount), "currency": currency, "order_id": "000000042",
		"operation_reference": ref,
		"method_details":      map[string]any{"method": "card", "submethod": "visa", "card": map[string]any{"last_four_digits": "4242"}},
		"lines":               []any{map[string]any{"line_number": 1, "item_name": "Mug", "item_sku": "MUG-1", "item_type": "PHYSICAL", "quantity": 1, "unit_price_gross": json.RawMessage(amount)}},
		"custom_attributes":   []any{map[string]any{"name": "channel", "value": "web"}},
	}
}

// command sends one signed JSON-RPC command and returns the HTTP answer.
func (e *mibEnv) command(method string, p map[string]any) response {
	e.t.Helper()
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": fmt.Sprintf("rpc-%d", e.seq.Add(1)),
		"method": "magento.payments.payments_management." + method, "params": map[string]any{"payment": p},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.raw(body, mibSign(mibSecret, body))
}

func (e *mibEnv) raw(body []byte, sig string) response {
	e.t.Helper()
	return do(e.t, http.MethodPost, mibPath, body, map[string]string{"Content-Type": "application/json", "X-Signature": sig})
}

func (e *mibEnv) accepted(method string, p map[string]any) {
	e.t.Helper()
	r := e.command(method, p)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"result":{}`) {
		e.t.Fatalf("%s: %s, want 200 with result {}", method, r)
	}
}

// waitNotification waits for the one notification of ref and checks it.
func (e *mibEnv) waitNotification(ref, method string) map[string]any {
	e.t.Helper()
	if !waitUntil(5*time.Second, func() bool { return len(e.bus.notificationsFor(ref)) > 0 }) {
		e.t.Fatalf("no notification for %s within 5s", ref)
	}
	n := e.bus.notificationsFor(ref)[0]
	if got := n.Body["method"]; got != "magento.payments.payments_management."+method {
		e.t.Fatalf("%s: notification %v, want %s: %s", ref, got, method, n.Raw)
	}
	if n.Body["jsonrpc"] != "2.0" || !strings.HasPrefix(fmt.Sprint(n.Body["id"]), "paybridge-") {
		e.t.Fatalf("%s: envelope %s", ref, n.Raw)
	}
	p := n.Body["params"].(map[string]any)["payment"].(map[string]any)
	if _, ok := p["gateway_response"].(string); !ok {
		e.t.Fatalf("%s: gateway_response is not a string: %s", ref, n.Raw)
	}
	if _, ok := p["gateway_response_time"].(float64); !ok {
		e.t.Fatalf("%s: gateway_response_time is not a number: %s", ref, n.Raw)
	}
	return p
}

// settle waits a little so that a second notification, if any were owed
// by mistake, would have arrived.
func (e *mibEnv) exactlyOne(ref string) {
	e.t.Helper()
	time.Sleep(300 * time.Millisecond)
	if n := e.bus.notificationsFor(ref); len(n) != 1 {
		e.t.Fatalf("%s: %d notifications, want exactly 1", ref, len(n))
	}
}

func TestMagentoCommandsAndNotifications(t *testing.T) {
	e := newMibEnv(t, "")
	if r := do(t, http.MethodOptions, mibPath, nil, nil); r.Status != 200 || r.Header.Get("X-Magento-Service-Bus") != "*" {
		t.Fatalf("OPTIONS: %s %v", r, r.Header)
	}
	cases := []struct {
		name, method, key, amount, currency, ref, notify string
	}{
		{"validate", "validate", "tok_visa_m1", "129.00", "EUR", "op-val-1", "notify_validated"},
		{"revalidate", "revalidate", "tok_visa_m1", "129.00", "EUR", "op-reval-1", "notify_revalidated"},
		{"capture", "capture", "tok_visa_m1", "50.5", "EUR", "op-cap-1", "notify_captured"},
		{"refund", "refund", "tok_visa_m1", "20.25", "EUR", "op-ref-1", "notify_refunded"},
		{"refund over what was captured", "refund", "tok_visa_m1", "40.00", "EUR", "op-ref-2", "notify_refund_failed"},
		{"cancel after capture", "cancel", "tok_visa_m1", "0", "EUR", "op-can-1", "notify_cancellation_failed"},
		{"cancel", "cancel", "tok_visa_m2", "10", "JPY", "op-can-2", "notify_cancelled"},
		{"validation declined", "validate", "tok_decline_m3", "5.00", "USD", "op-val-3", "notify_validation_failed"},
		{"capture declined", "capture", "tok_capture_fail_m4", "7.000", "KWD", "op-cap-4", "notify_capture_failed"},
		{"refund declined", "refund", "tok_refund_fail_m5", "1.00", "EUR", "op-ref-5", "notify_refund_failed"},
		{"capture after cancel", "capture", "tok_visa_m2", "10", "JPY", "op-cap-6", "notify_capture_failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "refund declined" {
				e.accepted("capture", mibPayment(c.key, "1.00", c.currency, "op-cap-5"))
				e.waitNotification("op-cap-5", "notify_captured")
			}
			p := mibPayment(c.key, c.amount, c.currency, c.ref)
			if c.method == "refund" {
				p["lines"].([]any)[0].(map[string]any)["refund_amount"] = json.RawMessage(c.amount)
			}
			e.accepted(c.method, p)
			got := e.waitNotification(c.ref, c.notify)
			// The payment is echoed, its amount literal unchanged.
			n := e.bus.notificationsFor(c.ref)[0]
			if !strings.Contains(string(n.Raw), `"amount":`+c.amount+`,`) || got["gateway_key"] != c.key || got["order_id"] != "000000042" {
				t.Fatalf("echo: %s", n.Raw)
			}
			if strings.HasSuffix(c.notify, "_failed") != strings.Contains(got["gateway_response"].(string), `"status":"failed"`) {
				t.Fatalf("gateway_response %q for %s", got["gateway_response"], c.notify)
			}
		})
	}
	for _, c := range cases {
		e.exactlyOne(c.ref)
	}
	// Every notification carried a token the bus had issued.
	e.bus.mu.Lock()
	for _, n := range e.bus.notifications {
		if !strings.HasPrefix(n.Bearer, "access-") {
			t.Errorf("notification without a valid bearer: %q", n.Bearer)
		}
	}
	issued := e.bus.tokensIssued
	e.bus.mu.Unlock()
	if issued != 1 {
		t.Errorf("%d tokens fetched for %d notifications; the token must be cached until it expires", issued, len(cases))
	}
	ops := countOps(readLedger(t, e.ledger))
	if ops["capture"] != 2 || ops["refund"] != 1 || ops["void"] != 1 {
		t.Errorf("ledger %v: want 2 captures (m1, m5), 1 refund (m1), 1 void (m2)", ops)
	}
	ledgerKeysUnique(t, readLedger(t, e.ledger))

	// MIB-driven operations produce the canonical events too.
	r := adminDo(t, http.MethodGet, "/paybridge/payments/ext%7Cmagento%7Ctok_visa_m1")
	if !strings.Contains(string(r.Body), `"PaymentCaptured"`) || !strings.Contains(string(r.Body), `"PaymentRefunded"`) {
		t.Fatalf("events of the MIB payment: %s", r)
	}
}

func TestMagentoDuplicatesRunOnce(t *testing.T) {
	e := newMibEnv(t, "")
	p := mibPayment("tok_visa_dup", "30.00", "EUR", "op-dup-1")
	// The same command with a new JSON-RPC id (a bus retry): one capture.
	for range 3 {
		e.accepted("capture", p)
	}
	e.waitNotification("op-dup-1", "notify_captured")
	e.exactlyOne("op-dup-1")
	// Without an operation reference the JSON-RPC id is the key.
	noRef := mibPayment("tok_visa_dup2", "5.00", "EUR", "")
	delete(noRef, "operation_reference")
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 77, "method": "magento.payments.payments_management.capture", "params": map[string]any{"payment": noRef}})
	for range 2 {
		if r := e.raw(body, mibSign(mibSecret, body)); r.Status != 200 || !strings.Contains(string(r.Body), `"id":77`) {
			t.Fatalf("%s", r)
		}
	}
	time.Sleep(500 * time.Millisecond)
	ops := countOps(readLedger(t, e.ledger))
	if ops["capture"] != 2 {
		t.Fatalf("ledger %v: want 2 captures", ops)
	}
	ledgerKeysUnique(t, readLedger(t, e.ledger))
	// A command the rules refuse (a refund of a payment nothing was
	// captured from), sent again: one failure notification, both accepted.
	refused := mibPayment("tok_visa_dup3", "4.00", "EUR", "op-dup-refund")
	for range 2 {
		e.accepted("refund", refused)
	}
	e.waitNotification("op-dup-refund", "notify_refund_failed")
	e.exactlyOne("op-dup-refund")
}

// OMS never says how much the storefront authorized: a first partial
// capture, or a first validate of 0, must not become the limit of the
// captures after it (the PSP bounds them).
func TestMagentoAdoptedAuthorizationIsNotBoundedByTheFirstCommand(t *testing.T) {
	e := newMibEnv(t, "")
	e.accepted("capture", mibPayment("tok_visa_split", "30.00", "EUR", "op-split-1"))
	e.waitNotification("op-split-1", "notify_captured")
	e.accepted("capture", mibPayment("tok_visa_split", "70.00", "EUR", "op-split-2"))
	e.waitNotification("op-split-2", "notify_captured")

	e.accepted("validate", mibPayment("tok_visa_zero", "0", "EUR", "op-zero-validate"))
	e.waitNotification("op-zero-validate", "notify_validated")
	e.accepted("capture", mibPayment("tok_visa_zero", "25.00", "EUR", "op-zero-capture"))
	e.waitNotification("op-zero-capture", "notify_captured")
	// Refunds stay bounded by what was captured (a refund is taken from
	// one capture): 70.00 fits the second capture, 31.00 fits neither.
	e.accepted("refund", mibPayment("tok_visa_split", "70.00", "EUR", "op-split-refund"))
	e.waitNotification("op-split-refund", "notify_refunded")
	e.accepted("refund", mibPayment("tok_visa_split", "31.00", "EUR", "op-split-refund-2"))
	e.waitNotification("op-split-refund-2", "notify_refund_failed")
}

func TestMagentoOutageEndsInDelivery(t *testing.T) {
	e := newMibEnv(t, "")
	// tok_outage: the PSP is unreachable for 600ms after the operation was
	// created, longer than the 300ms the call waits.
	start := time.Now()
	e.accepted("capture", mibPayment("tok_outage_m", "12.00", "EUR", "op-out-1"))
	if time.Since(start) > 2*time.Second {
		t.Fatalf("the command waited %s for the PSP", time.Since(start))
	}
	e.waitNotification("op-out-1", "notify_captured")
	e.exactlyOne("op-out-1")
}

func TestMagentoDelegateRefusingThenAccepting(t *testing.T) {
	e := newMibEnv(t, "")
	e.bus.refuse.Store(3)    // three 503s
	e.bus.rpcErrors.Store(2) // then two 200s carrying a JSON-RPC error
	e.accepted("capture", mibPayment("tok_visa_ref", "9.99", "USD", "op-del-1"))
	e.waitNotification("op-del-1", "notify_captured")
	e.exactlyOne("op-del-1")
	e.bus.mu.Lock()
	refused := e.bus.refusals
	e.bus.mu.Unlock()
	if refused != 5 {
		t.Fatalf("%d refused attempts before delivery, want 5", refused)
	}
}

func TestMagentoTokenExpiringMidRun(t *testing.T) {
	e := newMibEnv(t, "")
	e.accepted("capture", mibPayment("tok_visa_tk", "1.00", "EUR", "op-tok-1"))
	e.waitNotification("op-tok-1", "notify_captured")
	e.bus.expireTokens()
	e.accepted("capture", mibPayment("tok_visa_tk2", "2.00", "EUR", "op-tok-2"))
	n := e.waitNotification("op-tok-2", "notify_captured")
	_ = n
	e.bus.mu.Lock()
	defer e.bus.mu.Unlock()
	if e.bus.tokensIssued != 2 {
		t.Fatalf("%d tokens fetched, want 2 (the first, then one after the bus refused it)", e.bus.tokensIssued)
	}
	if e.bus.refusals != 1 {
		t.Fatalf("%d refused calls, want 1 (retried at once with a new token)", e.bus.refusals)
	}
}

func TestMagentoRestartBetweenAcceptAndNotify(t *testing.T) {
	e := newMibEnv(t, "")
	e.bus.refuse.Store(1 << 20) // the delegate is down
	// tok_async stays pending for 200ms: accepted, not settled.
	e.accepted("capture", mibPayment("tok_async_rs", "3.00", "EUR", "op-rs-1"))
	if err := loadConfig(emptyConfig); err != nil { // paybridge stops
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	e.bus.refuse.Store(0)
	if err := loadConfig(e.config()); err != nil { // and starts again
		t.Fatal(err)
	}
	e.waitNotification("op-rs-1", "notify_captured")
	e.exactlyOne("op-rs-1")
}

func TestMagentoRefusals(t *testing.T) {
	e := newMibEnv(t, "")
	good := func() map[string]any { return mibPayment("tok_visa_bad", "10.00", "EUR", "op-bad") }
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "x", "method": "magento.payments.payments_management.capture", "params": map[string]any{"payment": good()}})
	if r := e.raw(body, mibSign("wrong", body)); r.Status != http.StatusUnauthorized {
		t.Errorf("bad signature: %s, want 401", r)
	}
	if r := e.raw(body, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("no signature: %s, want 401", r)
	}
	if r := e.raw(body, mibSign("mib_secret_previous", body)); r.Status != 200 {
		t.Errorf("the second secret: %s, want 200", r)
	}
	rpc := func(name string, body []byte, code int, data string) {
		t.Helper()
		r := e.raw(body, mibSign(mibSecret, body))
		var a struct {
			ID    json.RawMessage `json:"id"`
			Error *struct {
				Code int    `json:"code"`
				Data string `json:"data"`
			} `json:"error"`
		}
		if r.Status != 200 || json.Unmarshal(r.Body, &a) != nil || a.Error == nil || a.Error.Code != code || a.Error.Data != data {
			t.Errorf("%s: %s, want HTTP 200 with error code %d data %q", name, r, code, data)
		}
	}
	env := func(method string, p any) []byte {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "r1", "method": method, "params": map[string]any{"payment": p}})
		return b
	}
	rpc("not JSON", []byte(`{"jsonrpc":`), -32700, "")
	rpc("no jsonrpc", []byte(`{"id":"1","method":"magento.payments.payments_management.capture","params":{}}`), -32600, "")
	rpc("params not an object", []byte(`{"jsonrpc":"2.0","id":"1","method":"magento.payments.payments_management.capture","params":[1]}`), -32600, "")
	rpc("unknown method", env("magento.payments.payments_management.authorize", good()), -32601, "magento.payments.payments_management.authorize")
	for _, c := range []struct {
		name  string
		edit  func(p map[string]any)
		field string
	}{
		{"no gateway_key", func(p map[string]any) { delete(p, "gateway_key") }, "payment.gateway_key"},
		{"no gateway_account", func(p map[string]any) { delete(p, "gateway_account") }, "payment.gateway_account"},
		{"three decimals in EUR", func(p map[string]any) { p["amount"] = json.RawMessage("10.005") }, "payment.amount"},
		{"exponent", func(p map[string]any) { p["amount"] = json.RawMessage("1e1") }, "payment.amount"},
		{"amount as a string", func(p map[string]any) { p["amount"] = "10.00" }, "payment.amount"},
		{"lower-case currency", func(p map[string]any) { p["currency"] = "eur" }, "payment.currency"},
		{"line without sku", func(p map[string]any) { delete(p["lines"].([]any)[0].(map[string]any), "item_sku") }, "payment.lines[0].item_sku"},
	} {
		p := good()
		c.edit(p)
		rpc(c.name, env("magento.payments.payments_management.capture", p), -32602, c.field)
	}
	p := good()
	p["lines"].([]any)[0].(map[string]any)["refund_amount"] = json.RawMessage("3.00")
	rpc("refund lines not adding up", env("magento.payments.payments_management.refund", p), -32602, "payment.lines")
}

func TestMagentoRegistersOnStartNotOnValidate(t *testing.T) {
	bus := newFakeBus(t)
	dir := t.TempDir()
	e := &mibEnv{t: t, bus: bus, ledger: filepath.Join(dir, "ledger"), storage: filepath.Join(dir, "store"), extra: "register"}
	if err := validateJSON(adaptCaddyfile(t, e.config())); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	bus.mu.Lock()
	n := len(bus.registrations)
	bus.mu.Unlock()
	if n != 0 {
		t.Fatalf("caddy validate registered %d times", n)
	}
	startCaddy(t, e.config())
	if !waitUntil(5*time.Second, func() bool { bus.mu.Lock(); defer bus.mu.Unlock(); return len(bus.registrations) == 1 }) {
		t.Fatal("no registration after start")
	}
	bus.mu.Lock()
	reg := bus.registrations[0]
	bus.mu.Unlock()
	if reg["id"] != "acme_payments" || reg["url"] != "http://localhost:9080/mib" || reg["secret"] != mibSecret {
		t.Fatalf("registration params %v", reg)
	}
	var state map[string]map[string]any
	ok := waitUntil(2*time.Second, func() bool {
		r := adminDo(t, http.MethodGet, "/paybridge/magento")
		state = nil
		_ = json.Unmarshal(r.Body, &state)
		reg, _ := state["magento"]["registration"].(map[string]any)
		return reg != nil && reg["remote_endpoint"] != nil
	})
	if !ok {
		t.Fatalf("admin API: %v", state)
	}
	ep := state["magento"]["registration"].(map[string]any)["remote_endpoint"].(map[string]any)
	if ep["delegate_url"] != bus.srv.URL+"/delegate/acme_payments" || state["magento"]["delegate_url"] != bus.srv.URL+"/delegate/oms" {
		t.Fatalf("registration kept: %v", state)
	}
}

func TestMibRegisterCommand(t *testing.T) {
	bus := newFakeBus(t)
	dir := t.TempDir()
	e := &mibEnv{t: t, bus: bus, ledger: filepath.Join(dir, "ledger"), storage: filepath.Join(dir, "store")}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(e.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := mibRegisterCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--config", path})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"delegate_url": "`+bus.srv.URL+`/delegate/acme_payments"`) {
		t.Fatalf("output %s", out.String())
	}
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if len(bus.registrations) != 1 || bus.registrations[0]["id"] != "acme_payments" {
		t.Fatalf("registrations %v", bus.registrations)
	}
}

func TestMagentoConfigErrors(t *testing.T) {
	t.Setenv("PAYBRIDGE_TEST_UNSET", "")
	base := func(options string) string {
		return fmt.Sprintf(`{
	admin localhost:2999
	paybridge {
		storage %s
		gateway default sandbox
	}
}

http://localhost:9080 {
	handle /mib {
		paybridge magento {
			%s
		}
	}
}
`, filepath.Join(t.TempDir(), "store"), options)
	}
	full := "endpoint_name acme\n\t\t\tsecret s\n\t\t\tbus_url http://127.0.0.1:1\n\t\t\toauth_token_url http://127.0.0.1:1/oauth/token\n\t\t\tclient_id c\n\t\t\tclient_secret cs"
	for _, c := range []struct {
		name    string
		options string
		wants   []string
	}{
		{"no secret", strings.Replace(full, "secret s\n", "", 1), []string{"secret", "Caddyfile:"}},
		{"secret from an unset variable", strings.Replace(full, "secret s", "secret {env.PAYBRIDGE_TEST_UNSET}", 1), []string{"secret"}},
		{"no endpoint_name", strings.Replace(full, "endpoint_name acme\n\t\t\t", "", 1), []string{"endpoint_name", "Caddyfile:"}},
		{"bus_url not a URL", strings.Replace(full, "bus_url http://127.0.0.1:1", "bus_url mib.example.com", 1), []string{"bus_url"}},
		{"register without public_url", full + "\n\t\t\tregister", []string{"public_url"}},
		{"unknown option", full + "\n\t\t\tcolour blue", []string{"colour", "Caddyfile:"}},
	} {
		t.Run(c.name, func(t *testing.T) { assertLoadError(t, base(c.options), c.wants...) })
	}
}

// TestMagentoGivesUpAfterMaxAge: a PSP that never answers is retried until
// max_age; then the bus hears the failure.
func TestMagentoGivesUpAfterMaxAge(t *testing.T) {
	bus := newFakeBus(t)
	dir := t.TempDir()
	e := &mibEnv{t: t, bus: bus, ledger: filepath.Join(dir, "ledger"), storage: filepath.Join(dir, "store")}
	startCaddy(t, strings.Replace(e.config(), "retry_backoff 50ms 200ms", "retry_backoff 50ms 200ms\n\t\tmax_age 1s", 1))
	start := time.Now()
	e.accepted("capture", mibPayment("tok_unavailable_ma", "4.00", "EUR", "op-ma-1"))
	p := e.waitNotification("op-ma-1", "notify_capture_failed")
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("gave up after %s, before max_age", waited)
	}
	if !strings.Contains(p["gateway_response"].(string), "gateway_timeout") && !strings.Contains(p["gateway_response"].(string), "gateway_unavailable") {
		t.Fatalf("gateway_response %q", p["gateway_response"])
	}
	e.exactlyOne("op-ma-1")
}

// TestMagentoRevalidationReauthorizes: an expired authorization fails
// validation; revalidation re-authorizes and names the new gateway key,
// which later commands may use for the same payment.
func TestMagentoRevalidationReauthorizes(t *testing.T) {
	e := newMibEnv(t, "")
	e.accepted("validate", mibPayment("tok_expired_rv", "80.00", "EUR", "op-rv-1"))
	p := e.waitNotification("op-rv-1", "notify_validation_failed")
	if !strings.Contains(p["gateway_response"].(string), "authorization_expired") {
		t.Fatalf("gateway_response %q", p["gateway_response"])
	}
	e.accepted("revalidate", mibPayment("tok_expired_rv", "80.00", "EUR", "op-rv-2"))
	p = e.waitNotification("op-rv-2", "notify_revalidated")
	newKey, _ := p["new_gateway_key"].(string)
	if newKey == "" || newKey == "tok_expired_rv" {
		t.Fatalf("new_gateway_key %q", newKey)
	}
	// OMS uses the new key from now on: the same payment, whose 80.00
	// authorization is captured once.
	e.accepted("capture", mibPayment(newKey, "80.00", "EUR", "op-rv-3"))
	e.waitNotification("op-rv-3", "notify_captured")
	e.accepted("capture", mibPayment("tok_expired_rv", "0.01", "EUR", "op-rv-4"))
	e.waitNotification("op-rv-4", "notify_capture_failed")
	// A revalidation of an authorization that holds names no new key.
	e.accepted("revalidate", mibPayment("tok_visa_rv", "5.00", "EUR", "op-rv-5"))
	if p := e.waitNotification("op-rv-5", "notify_revalidated"); p["new_gateway_key"] != nil {
		t.Fatalf("new_gateway_key %v for an authorization that holds", p["new_gateway_key"])
	}
}

// A notification echoes the command's payment, card and bank details
// included: while no OAuth token can be had, it is not sent at all (not
// sent without one to draw a 401), and it goes out once a token comes.
func TestMagentoNotificationWaitsForItsToken(t *testing.T) {
	e := newMibEnv(t, "")
	e.bus.tokenDown.Store(true)
	e.accepted("capture", mibPayment("tok_visa_mibtoken", "3.00", "EUR", "op-token-1"))
	if !waitUntil(5*time.Second, func() bool {
		for _, m := range outbox(t, "pending") {
			if m.Attempts > 0 && strings.Contains(m.LastError, "OAuth") {
				return true
			}
		}
		return false
	}) {
		t.Fatal("the notification was not held back for its token")
	}
	if n := e.bus.anonymous.Load(); n > 0 {
		t.Fatalf("%d notifications sent without an access token", n)
	}
	e.bus.tokenDown.Store(false)
	e.waitNotification("op-token-1", "notify_captured")
	if n := e.bus.anonymous.Load(); n > 0 {
		t.Fatalf("%d notifications sent without an access token", n)
	}
}
