package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// heldGateway is the sandbox, except that Execute waits, past any
// deadline, until the test releases it: a first delivery of a call that
// holds the call longer than a repeat may wait.
type heldGateway struct {
	payment.Gateway
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *heldGateway) Execute(ctx context.Context, op payment.Operation) (payment.Result, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.release
	return g.Gateway.Execute(context.WithoutCancel(ctx), op)
}

func heldEngine(t *testing.T) (*heldGateway, func(context.Context) (*payment.Engine, error)) {
	t.Helper()
	var g *heldGateway
	_, engine := sandboxEngineAround(t, func(sb payment.Gateway) payment.Gateway {
		g = &heldGateway{Gateway: sb, entered: make(chan struct{}), release: make(chan struct{})}
		return g
	})
	return g, engine
}

// sendTwice sends a call, waits until its PSP call has begun, and sends
// it again; it returns the second delivery's answer, then lets the first
// finish.
func sendTwice(t *testing.T, g *heldGateway, h http.Handler, newRequest func() *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	first := make(chan struct{})
	go func() {
		defer close(first)
		h.ServeHTTP(httptest.NewRecorder(), newRequest())
	}()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first delivery never reached the PSP")
	}
	defer func() {
		close(g.release)
		<-first
	}()
	second := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, newRequest())
		second <- w
	}()
	select {
	case w := <-second:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("the repeat still waits for the first delivery after 10 s")
		return nil
	}
}

// A repeat that waited out its deadline behind the first delivery is told,
// in Commerce Layer's error format, that nothing was done and to send it
// again; it is not an internal error.
func TestCommerceLayerRepeatBehindFirstDeliveryIsAskedToRetry(t *testing.T) {
	g, engine := heldEngine(t)
	h := testCommerceLayer()
	h.Engine = engine
	h.Policy = payment.Policy{Deadline: 100 * time.Millisecond}
	body := mustJSON(t, clAuthorizeDoc())
	w := sendTwice(t, g, h, func() *http.Request { return signedRequest(http.MethodPost, "authorize", body, testSecret) })
	var reply clReply
	_ = json.Unmarshal(w.Body.Bytes(), &reply)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" ||
		reply.Success || reply.Error == nil || reply.Error.Code != "call_in_progress" {
		t.Fatalf("repeat behind the first delivery: %d Retry-After=%q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if reply.Error.Message != inProgressMessage {
		t.Errorf("message %q", reply.Error.Message)
	}
}

// The same for a Magento command: a JSON-RPC error in a 503, which makes
// the bus send it again, and no second run of the command.
func TestMagentoRepeatBehindFirstDeliveryIsAskedToRetry(t *testing.T) {
	g, engine := heldEngine(t)
	secret := []byte("mib-secret")
	h := &Magento{Name: "magento", Gateway: "default", Secrets: [][]byte{secret}, Engine: engine, Logger: zap.NewNop(),
		Policy: payment.Policy{Deadline: 100 * time.Millisecond}}
	body := []byte(`{"jsonrpc":"2.0","id":"7","method":"magento.payments.payments_management.capture","params":{"payment":{"gateway":"g","gateway_account":"a","gateway_key":"tok_visa_mib","amount":5.00,"currency":"EUR","operation_reference":"op-1"}}}`)
	w := sendTwice(t, g, h, func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/mib", bytes.NewReader(body))
		r.Header.Set(MIBSignatureHeader, signature.MIB(secret, body))
		return r
	})
	want := `{"jsonrpc":"2.0","id":"7","error":{"code":-32603,"message":"` + inProgressMessage + `"}}`
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" || w.Body.String() != want {
		t.Fatalf("repeat behind the first delivery: %d Retry-After=%q\n got %s\nwant %s", w.Code, w.Header().Get("Retry-After"), w.Body, want)
	}
}

// unreachableVault never answers a vault call before its deadline.
type unreachableVault struct{ payment.Gateway }

func (g unreachableVault) Vault(ctx context.Context, _ payment.VaultRequest) (payment.VaultResult, error) {
	<-ctx.Done()
	return payment.VaultResult{}, &payment.Fault{Err: errors.New("unreachable (test)")}
}

// Deliveries of one token call that queue behind each other while the PSP
// does not answer each get an answer in about their deadline: a refused
// vault call is not remembered, so each would otherwise make its own PSP
// attempt after the one before, and the k-th would wait k deadlines.
func TestCommerceLayerTokenDeliveriesQueueWithinTheirDeadline(t *testing.T) {
	_, engine := sandboxEngineAround(t, func(sb payment.Gateway) payment.Gateway { return unreachableVault{sb} })
	h := testCommerceLayer()
	h.Engine = engine
	deadline := 400 * time.Millisecond
	h.Policy = payment.Policy{Deadline: deadline}
	body := mustJSON(t, clTokenDoc())
	const n = 4
	var wg sync.WaitGroup
	took := make([]time.Duration, n)
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, signedRequest(http.MethodPost, "token", body, testSecret))
			took[i], codes[i] = time.Since(start), w.Code
		}()
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	for i := range n {
		if took[i] > 2*deadline {
			t.Errorf("delivery %d answered %d after %v; its deadline is %v", i, codes[i], took[i], deadline)
		}
		if codes[i] != http.StatusBadGateway && codes[i] != http.StatusServiceUnavailable {
			t.Errorf("delivery %d: HTTP %d, want 502 (PSP unreachable) or 503 (call in progress)", i, codes[i])
		}
	}
}
