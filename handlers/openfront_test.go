package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/internal/oftest"
	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

const (
	ofKey    = "of_key_live_1"
	ofOldKey = "of_key_previous"
	ofWhsec  = "whsec_test_1"
)

// testOpenfront has no engine: calls that get past authentication and
// decoding answer 503, which is how these tests see that they did.
func testOpenfront() *Openfront {
	return &Openfront{
		Name: "openfront", Gateway: "default",
		APIKeys:        [][]byte{[]byte(ofKey), []byte(ofOldKey)},
		WebhookSecrets: [][]byte{[]byte(ofWhsec)},
		PaymentPage:    func(id string) string { return "https://pay.example.com/psp/checkout/" + id },
		MaxBodySize:    4096,
		Engine:         func(context.Context) (*payment.Engine, error) { return nil, payment.ErrNotReady },
		Logger:         zap.NewNop(),
	}
}

func ofCall(h http.Handler, method, fn string, body []byte, header map[string]string) (int, map[string]any) {
	r := httptest.NewRequest(method, "/openfront/"+fn, bytes.NewReader(body))
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func TestOpenfrontCheckOrder(t *testing.T) {
	h := testOpenfront()
	good := oftest.CheckoutCreate(ofKey, "cart_1", 12900, "eur")
	cases := []struct {
		name   string
		method string
		fn     string
		body   []byte
		header map[string]string
		status int
	}{
		{"GET", http.MethodGet, "create-payment", good, nil, 405},
		{"unknown function before auth", http.MethodPost, "pay-now", nil, nil, 404},
		{"too large", http.MethodPost, "create-payment", bytes.Repeat([]byte(" "), 5000), nil, 413},
		{"not JSON", http.MethodPost, "create-payment", []byte("cart=1"), nil, 400},
		{"no key", http.MethodPost, "create-payment", []byte(`{"cart":{"id":"c"}}`), nil, 401},
		{"wrong key", http.MethodPost, "create-payment", oftest.CheckoutCreate("of_key_wrong", "cart_1", 12900, "eur"), nil, 401},
		{"key prefix only", http.MethodPost, "create-payment", oftest.CheckoutCreate(ofKey[:5], "cart_1", 12900, "eur"), nil, 401},
		{"wrong bearer", http.MethodPost, "create-payment", []byte(`{}`), map[string]string{"Authorization": "Bearer nope"}, 401},
		{"credentials key", http.MethodPost, "create-payment", good, nil, 503},
		{"previous key", http.MethodPost, "capture-payment", oftest.Capture(ofOldKey, "pay_1", 100), nil, 503},
		{"documented provider", http.MethodPost, "create-payment", oftest.DocumentedCreate(ofKey, "cart_1", 12900, "EUR"), nil, 503},
		{"bearer only", http.MethodPost, "get-payment-status", []byte(`{"paymentId":"pay_1"}`), map[string]string{"Authorization": "bearer " + ofKey}, 503},
		{"credentials as a JSON string", http.MethodPost, "get-payment-status", []byte(`{"provider":{"credentials":"{\"apiKey\":\"` + ofKey + `\"}"},"paymentId":"p"}`), nil, 503},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, out := ofCall(h, c.method, c.fn, c.body, c.header)
			if status != c.status {
				t.Fatalf("HTTP %d, want %d (%v)", status, c.status, out)
			}
			if msg, _ := out["error"].(string); msg == "" {
				t.Fatalf("no {error} message: %v", out)
			}
			if strings.Contains(out["error"].(string), ofKey) {
				t.Fatalf("the error echoes the API key: %v", out)
			}
		})
	}
}

func TestOpenfrontMoneyBothShapes(t *testing.T) {
	cases := []struct {
		name     string
		body     []byte
		amount   int64
		currency string
	}{
		{"checkout cart (real)", oftest.CheckoutCreate(ofKey, "cart_1", 12900, "eur"), 12900, "EUR"},
		{"invoice (real)", oftest.InvoiceCreate(ofKey, "inv_1", 500, "jpy"), 500, "JPY"},
		{"documented", oftest.DocumentedCreate(ofKey, "cart_2", 1999, "USD"), 1999, "USD"},
		{"cart only, real", []byte(`{"cart":{"id":"c","rawTotal":700,"region":{"currency":{"code":"gbp"}}}}`), 700, "GBP"},
		{"cart only, invoice", []byte(`{"cart":{"id":"c","totalAmount":800,"currency":{"code":"Eur"}}}`), 800, "EUR"},
		{"cart only, documented", []byte(`{"cart":{"id":"c","total":900,"currency":"usd"}}`), 900, "USD"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, p := decodeOpenfront(c.body)
			if p != nil {
				t.Fatal(p)
			}
			amount, currency, p := req.money()
			if p != nil || amount != c.amount || currency != c.currency {
				t.Fatalf("got %d %s (%v), want %d %s", amount, currency, p, c.amount, c.currency)
			}
		})
	}
	for _, bad := range []string{
		`{"cart":{"id":"c"},"amount":129.5,"currency":"EUR"}`,
		`{"cart":{"id":"c"},"amount":1e3,"currency":"EUR"}`,
		`{"cart":{"id":"c"},"amount":-5,"currency":"EUR"}`,
		`{"cart":{"id":"c"},"amount":"100","currency":"EUR"}`,
		`{"cart":{"id":"c"},"amount":0,"currency":"EUR"}`,
		`{"cart":{"id":"c"},"amount":100}`,
		`{"cart":{"id":"c","rawTotal":12900.000000000002,"region":{"currency":{"code":"eur"}}}}`,
		`{"cart":{"id":"c"},"amount":99999999999999999999,"currency":"EUR"}`,
	} {
		req, p := decodeOpenfront([]byte(bad))
		if p == nil {
			_, _, p = req.money()
		}
		if p == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestOpenfrontDecodeRefusesTrailingData(t *testing.T) {
	if _, p := decodeOpenfront([]byte(`{"paymentId":"a"} {"paymentId":"b"}`)); p == nil {
		t.Fatal("two JSON values accepted")
	}
	// Decoder.More says false before these: they must be refused anyway.
	for _, body := range []string{`{"paymentId":"a"}}`, `{"paymentId":"a"}]`, `{"paymentId":"a"} x`} {
		if _, p := decodeOpenfront([]byte(body)); p == nil {
			t.Errorf("%s accepted", body)
		}
	}
	if _, p := decodeOpenfront([]byte(" {\"paymentId\":\"a\"}\n")); p != nil {
		t.Errorf("white space around the value refused: %s", p.msg)
	}
}

func signedEvent(t *testing.T, ev pspEvent, secret string, at time.Time) (json.RawMessage, string) {
	t.Helper()
	b, err := marshalJS(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b, signature.Sign([][]byte{[]byte(secret)}, at, b)
}

func authorizedEvent() pspEvent {
	return pspEvent{ID: "evt_1", Type: EventAuthorized, Created: 1795226204, Data: pspEventData{
		PaymentID: "pay_abc", Amount: 12900, Currency: "EUR", Status: "authorized",
		Metadata: map[string]string{"cartId": "cart_1", "paymentCollectionId": "pcol_1"},
	}}
}

func TestOpenfrontHandleWebhook(t *testing.T) {
	h := testOpenfront()
	event, sig := signedEvent(t, authorizedEvent(), ofWhsec, time.Now())
	for _, hdr := range []map[string]any{
		{"paybridge-signature": sig},
		{"Paybridge-Signature": sig},
		{"PAYBRIDGE-SIGNATURE": []string{sig}},
	} {
		status, out := ofCall(h, http.MethodPost, "handle-webhook", oftest.Webhook(ofKey, event, hdr), nil)
		if status != 200 {
			t.Fatalf("%v: HTTP %d %v", hdr, status, out)
		}
		// The documented fields and the ones Openfront's code reads.
		if out["verified"] != true || out["isValid"] != true || out["eventType"] != EventAuthorized ||
			out["type"] != EventAuthorized || out["paymentId"] != "pay_abc" || out["shouldUpdatePayment"] != true {
			t.Fatalf("answer %v", out)
		}
		res := out["resource"].(map[string]any)
		meta := res["metadata"].(map[string]any)
		if res["id"] != "pay_abc" || res["amount"] != float64(12900) || meta["cartId"] != "cart_1" || meta["paymentCollectionId"] != "pcol_1" {
			t.Fatalf("resource %v", res)
		}
	}

	forbidden := func(name string, body []byte) {
		t.Helper()
		status, out := ofCall(h, http.MethodPost, "handle-webhook", body, nil)
		if status != 403 || out["verified"] != false || out["error"] == "" {
			t.Errorf("%s: HTTP %d %v, want 403 {verified:false,error}", name, status, out)
		}
	}
	forbidden("no signature", oftest.Webhook(ofKey, event, map[string]any{}))
	_, otherSig := signedEvent(t, authorizedEvent(), "whsec_other", time.Now())
	forbidden("other secret", oftest.Webhook(ofKey, event, map[string]any{"paybridge-signature": otherSig}))
	_, staleSig := signedEvent(t, authorizedEvent(), ofWhsec, time.Now().Add(-time.Hour))
	forbidden("stale", oftest.Webhook(ofKey, event, map[string]any{"paybridge-signature": staleSig}))
	tampered := bytes.Replace(event, []byte("12900"), []byte("12901"), 1)
	forbidden("tampered amount", oftest.Webhook(ofKey, tampered, map[string]any{"paybridge-signature": sig}))
	// Re-serialised differently (pretty-printed): not the signed bytes.
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, event, "", " ")
	forbidden("re-serialised", oftest.Webhook(ofKey, pretty.Bytes(), map[string]any{"paybridge-signature": sig}))

	// A wrong API key is 401, distinct from a bad event signature.
	if status, _ := ofCall(h, http.MethodPost, "handle-webhook", oftest.Webhook("nope", event, map[string]any{"paybridge-signature": sig}), nil); status != 401 {
		t.Errorf("wrong API key: HTTP %d, want 401", status)
	}
}

func TestOpenfrontRelayRequest(t *testing.T) {
	h := testOpenfront()
	relay := &OpenfrontRelay{GraphQLURL: "https://shop.example.com/api/graphql", ProviderID: "prov_cm9x1", Header: http.Header{"Authorization": {"Bearer x"}}}
	queued := payment.EventBody(&payment.Payment{
		ID: "pay_abc", Platform: PlatformOpenfront, Handler: "openfront", Gateway: "default", Currency: "EUR",
		Purchase: payment.Purchase{CartID: "cart_<1>", CollectionID: "pcol_1"},
	}, payment.Event{ID: "evt_42", Type: payment.PaymentAuthorized, Sequence: 1, Amount: 12900, OccurredAt: time.Now()})
	now := time.Now()
	url, header, req, err := h.RelayDestination(relay, queued, now)
	if err != nil {
		t.Fatal(err)
	}
	if url != relay.GraphQLURL || header.Get("Authorization") != "Bearer x" {
		t.Fatalf("destination %s %v", url, header)
	}
	var gql struct {
		Query     string `json:"query"`
		Variables struct {
			ProviderID string            `json:"providerId"`
			Event      json.RawMessage   `json:"event"`
			Headers    map[string]string `json:"headers"`
		} `json:"variables"`
	}
	dec := json.NewDecoder(bytes.NewReader(req))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&gql); err != nil {
		t.Fatalf("relay request is not the GraphQL JSON expected: %v\n%s", err, req)
	}
	if !strings.Contains(gql.Query, "handlePaymentProviderWebhook(providerId: $providerId, event: $event, headers: $headers)") ||
		!strings.HasPrefix(gql.Query, "mutation") || gql.Variables.ProviderID != "prov_cm9x1" {
		t.Fatalf("query/variables: %s", req)
	}
	if err := signature.Verify(gql.Variables.Headers["paybridge-signature"], gql.Variables.Event, [][]byte{[]byte(ofWhsec)}, now, time.Minute); err != nil {
		t.Fatalf("event signature: %v", err)
	}
	if gql.Variables.Headers["paybridge-event-id"] != "evt_42" || !bytes.Contains(gql.Variables.Event, []byte(`"cartId":"cart_<1>"`)) {
		t.Fatalf("event: %s", gql.Variables.Event)
	}
	// Every attempt sends the same event bytes (only the signature's time moves).
	_, _, again, _ := h.RelayDestination(relay, queued, now)
	if !bytes.Equal(again, req) {
		t.Fatal("the same queued event rendered differently")
	}
}

func TestCheckGraphQL(t *testing.T) {
	for body, ok := range map[string]bool{
		`{"data":{"handlePaymentProviderWebhook":{"success":true}}}`:                         true,
		`{"data":null,"errors":[{"message":"Payment provider not found or not installed"}]}`: false,
		`{"data":{"handlePaymentProviderWebhook":{"success":false,"error":"x"}}}`:            false,
		`{"data":{}}`: false,
		`<html>`:      false,
	} {
		if err := CheckGraphQL([]byte(body)); (err == nil) != ok {
			t.Errorf("%s: err %v", body, err)
		}
	}
}

// A refusal can come before the engine found a payment; the renderers must
// answer it, not panic (net/http would drop the connection).
func TestOpenfrontRendersRefusalWithoutPayment(t *testing.T) {
	v := payment.Verdict{Err: &payment.Error{Kind: payment.KindInvalidRequest, Code: payment.CodeIdempotencyKeyReused, Message: "reused"}}
	for name, render := range map[string]payment.Render{"capture": renderCapture, "refund": renderRefund} {
		if a := render(v); a.Status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, a.Status, a.Body)
		}
	}
}

// The PSP refunds one capture at a time. After partial captures of 4000 and
// 6000, a refund of 8000 is refused with a message that says why and what
// can be refunded at once; the parts then go through.
func TestOpenfrontRefundAfterPartialCaptures(t *testing.T) {
	_, engine := sandboxEngine(t)
	h := testOpenfront()
	h.Engine = engine
	psp := &GatewayRoutes{Name: "default", Checkout: true, Secrets: [][]byte{[]byte(ofWhsec)}, Engine: engine, Logger: zap.NewNop()}
	call := func(fn string, body []byte) (int, map[string]any) { return ofCall(h, http.MethodPost, fn, body, nil) }
	status, created := call("create-payment", oftest.CheckoutCreate(ofKey, "cart_1", 10000, "eur"))
	if status != http.StatusOK {
		t.Fatalf("create-payment: %d %v", status, created)
	}
	id, _ := created["paymentId"].(string)
	confirm := httptest.NewRequest(http.MethodPost, "/psp/default/checkout/"+id+"/confirm", strings.NewReader(`{"token":"tok_visa"}`))
	confirm.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	psp.ServeHTTP(w, confirm)
	if w.Code != http.StatusOK {
		t.Fatalf("confirm: %d %s", w.Code, w.Body)
	}
	for _, amount := range []int64{4000, 6000} {
		if status, body := call("capture-payment", oftest.Capture(ofKey, id, amount)); status != http.StatusOK {
			t.Fatalf("capture %d: %d %v", amount, status, body)
		}
	}
	status, body := call("refund-payment", oftest.Refund(ofKey, id, 8000))
	msg, _ := body["error"].(string)
	if status != http.StatusUnprocessableEntity || !strings.Contains(msg, "parts of at most 6000") {
		t.Fatalf("refund 8000 after captures of 4000 and 6000: %d %v", status, body)
	}
	for _, amount := range []int64{6000, 2000} {
		if status, body := call("refund-payment", oftest.Refund(ofKey, id, amount)); status != http.StatusOK || body["success"] != true {
			t.Fatalf("refund %d: %d %v", amount, status, body)
		}
	}
	if status, body := call("refund-payment", oftest.Refund(ofKey, id, 2001)); status != http.StatusUnprocessableEntity {
		t.Fatalf("refund beyond the captures: %d %v", status, body)
	}
}

// Capturing what is already captured returns the existing capture of that
// amount; never another capture, and never while a capture is in flight
// (it may yet fail, and Openfront would have been told it succeeded).
func TestOpenfrontFullyCapturedAnswersOnlyWithItsOwnCapture(t *testing.T) {
	auth := &payment.Transaction{ID: "tx_a", Kind: payment.Authorize, Token: "pbt_a", Amount: 10000, State: payment.Succeeded}
	six := &payment.Transaction{ID: "tx_6", Kind: payment.Capture, Token: "pbt_6", Parent: "pbt_a", Amount: 6000, State: payment.Succeeded}
	four := &payment.Transaction{ID: "tx_4", Kind: payment.Capture, Token: "pbt_4", Parent: "pbt_a", Amount: 4000, State: payment.Processing}
	p := &payment.Payment{ID: "pay_1", Currency: "EUR", Amount: 10000, Authorized: 10000, Captured: 6000,
		Status: payment.StatusCaptured, Txs: []*payment.Transaction{auth, six, four}}
	if got := fullyCaptured(p, 4000); got != nil {
		t.Errorf("with the capture of 4000 in flight: answered with %s", got.Token)
	}
	four.State = payment.Succeeded
	p.Captured = 10000
	for amount, want := range map[int64]string{6000: "pbt_6", 4000: "pbt_4"} {
		if got := fullyCaptured(p, amount); got == nil || got.Token != want {
			t.Errorf("capture of %d: %v, want %s", amount, got, want)
		}
	}
	if got := fullyCaptured(p, 10000); got != nil {
		t.Errorf("capture of 10000, which no capture was: answered with %s", got.Token)
	}
}
