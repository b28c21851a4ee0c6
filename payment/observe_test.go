package payment_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

type countObs struct {
	mu    sync.Mutex
	calls map[string]int
}

func (o *countObs) Operation(string, string, string) {}
func (o *countObs) GatewayCall(gw, op string, d time.Duration) {
	o.mu.Lock()
	o.calls[op]++
	o.mu.Unlock()
}

func TestVerifyCallsAreObserved(t *testing.T) {
	h := newHarness(t)
	obs := &countObs{calls: map[string]int{}}
	h.eng = payment.New(payment.Config{Store: h.st, Gateways: gatewayMap{hGateway: h.gw}, Now: h.clock.Now, Observer: obs,
		Settings: func() payment.Settings {
			return payment.Settings{ReconcileInterval: hReconcile, MaxAge: 72 * time.Hour}
		}})
	// the PSP executes the authorization but the answer is lost
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if op.Kind == payment.Authorize {
			if _, err := h.sbx.Execute(ctx, op); err != nil {
				return payment.Result{}, err
			}
			return payment.Result{}, &payment.Fault{Sent: true, Err: context.DeadlineExceeded}
		}
		return h.sbx.Execute(ctx, op)
	})
	r := h.authorize("repro|1", "tok_visa_4242", 1000) // Policy.Async false: told failed, Verify set
	t.Logf("answer %d %s", r.Status, r.Body)
	h.gw.setExecute(nil)
	h.reconcileAfter(2 * hReconcile)
	h.reconcileAfter(2 * hReconcile)
	t.Logf("gateway calls: execute %d status %d; observed %v; ledger %v", h.gw.count("execute"), h.gw.count("status"), obs.calls, h.ledgerEntries())
	if got, want := obs.calls["status"]+obs.calls["void"]+obs.calls["authorize"], h.gw.count("execute")+h.gw.count("status"); got != want {
		t.Errorf("observed %d PSP calls, the gateway got %d", got, want)
	}
}
