package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/internal/cltest"
	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// emptyStore is a payment.Store that knows no token.
type emptyStore struct{}

func (emptyStore) Update(context.Context, func(payment.Tx) error) error { return nil }
func (emptyStore) View(_ context.Context, fn func(payment.Tx) error) error {
	return fn(emptyTx{})
}
func (emptyStore) OpenPayments(context.Context) ([]string, error) { return nil, nil }

type emptyTx struct{ payment.Tx }

func (emptyTx) PaymentIDByToken(string) (string, error) { return "", payment.ErrNotFound }

var webhookSecret = []byte("whsec-test")

func webhookRequest(method, route string, body []byte, header string) *http.Request {
	r := httptest.NewRequest(method, "/psp/default/"+route, bytes.NewReader(body))
	if header != "" {
		r.Header.Set(signature.Header, header)
	}
	return r
}

func TestGatewayRoutes(t *testing.T) {
	g := &GatewayRoutes{Secrets: [][]byte{webhookSecret}, Engine: notStartedFunc}
	event := []byte(`{"type":"operation.updated","data":{"key":"pbk_0123"}}`)
	fresh := signature.Sign([][]byte{webhookSecret}, time.Now(), event)
	check := func(name string, r *http.Request, status int, code string) {
		t.Helper()
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		var reply map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil {
			t.Errorf("%s: answer %q is not JSON", name, w.Body)
		}
		if w.Code != status || (code != "" && reply["error"] != code) {
			t.Errorf("%s: %d %s, want %d %s", name, w.Code, w.Body, status, code)
		}
	}
	check("unknown route", webhookRequest(http.MethodPost, "nope", event, fresh), 404, "not_found")
	check("GET", webhookRequest(http.MethodGet, "webhook", event, fresh), 405, "method_not_allowed")
	check("too big", webhookRequest(http.MethodPost, "webhook", bytes.Repeat([]byte(" "), DefaultMaxBodySize+1), fresh), 413, "body_too_large")
	check("unsigned", webhookRequest(http.MethodPost, "webhook", event, ""), 401, "invalid_signature")
	check("wrong secret", webhookRequest(http.MethodPost, "webhook", event, signature.Sign([][]byte{[]byte("x")}, time.Now(), event)), 401, "invalid_signature")
	check("stale", webhookRequest(http.MethodPost, "webhook", event, signature.Sign([][]byte{webhookSecret}, time.Now().Add(-2*WebhookTolerance), event)), 401, "invalid_signature")
	noKey := []byte(`{"type":"x","data":{}}`)
	check("no key", webhookRequest(http.MethodPost, "webhook", noKey, signature.Sign([][]byte{webhookSecret}, time.Now(), noKey)), 400, "invalid_request")
	check("not started", webhookRequest(http.MethodPost, "webhook", event, fresh), 503, "unavailable")

	g.Engine = func(context.Context) (*payment.Engine, error) {
		return payment.New(payment.Config{Store: emptyStore{}}), nil
	}
	check("unknown key", webhookRequest(http.MethodPost, "webhook", event, fresh), 200, "ignored")

	// No secret configured: nothing verifies.
	g.Secrets = nil
	check("no secrets", webhookRequest(http.MethodPost, "webhook", event, fresh), 401, "invalid_signature")
}

// A body that cannot be read is a bad request, not one that is too large.
func TestGatewayRoutesUnreadableBody(t *testing.T) {
	g := &GatewayRoutes{Secrets: [][]byte{webhookSecret}, Engine: notStartedFunc}
	r := webhookRequest(http.MethodPost, "webhook", nil, "")
	r.Body = io.NopCloser(failingReader{})
	r.ContentLength = -1
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest {
		t.Errorf("unreadable body answered %d %s, want 400", w.Code, w.Body)
	}
}

// The checkout page authorizes checkout sessions only. A Commerce Layer
// payment the PSP declined, its platform told so, must not become
// authorized because someone who learned its id confirmed it on the page.
func TestCheckoutRefusesPaymentsThatAreNotSessions(t *testing.T) {
	_, engine := sandboxEngine(t)
	e, _ := engine(context.Background())
	cl := testCommerceLayer()
	cl.Engine = engine
	body := mustJSON(t, cltest.AuthorizeDoc("ep_1", "tok_async_decline_1", 1000))
	w, rep := serve(cl, signedRequest(http.MethodPost, "authorize", body, testSecret))
	if w.Code != http.StatusAccepted {
		t.Fatalf("authorize: %d %s", w.Code, w.Body)
	}
	id := rep.Data.Metadata["payment_id"]
	waitFor(t, func() bool {
		_ = e.ReconcilePayment(context.Background(), id)
		p, err := e.Payment(context.Background(), id)
		return err == nil && p.Status == payment.StatusRefused
	})
	g := &GatewayRoutes{Name: "default", Checkout: true, Secrets: [][]byte{webhookSecret}, Engine: engine, Logger: zap.NewNop()}
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/psp/default/checkout/"+id, nil),
		httptest.NewRequest(http.MethodPost, "/psp/default/checkout/"+id+"/confirm", strings.NewReader(`{"token":"tok_visa"}`)),
	} {
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json")
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != http.StatusNotFound {
			t.Errorf("%s %s: %d %s, want 404", r.Method, r.URL.Path, w.Code, w.Body)
		}
	}
	if p, err := e.Payment(context.Background(), id); err != nil || p.Status != payment.StatusRefused {
		t.Fatalf("the Commerce Layer payment is %v (%v), want still refused", p.Status, err)
	}
}
