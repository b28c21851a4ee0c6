package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"path"
	"time"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// WebhookTolerance is how old a PSP webhook's signature timestamp may be.
const WebhookTolerance = 5 * time.Minute

// GatewayRoutes serves what a PSP or a customer reaches: the PSP's webhook
// (POST …/webhook), signed with the timestamped scheme, and, for a gateway
// with a test payment page (the sandbox), …/checkout/{payment_id}. A webhook
// only says "look now": the reconciler asks the PSP itself, so a forged or
// stale event cannot settle anything, and a lost one is caught on the next
// reconcile pass.
type GatewayRoutes struct {
	// Name is the gateway's configured name: the checkout serves only its
	// own payments.
	Name    string
	Secrets [][]byte
	// Checkout enables the test payment page (sandbox only).
	Checkout bool
	Engine   func(context.Context) (*payment.Engine, error)
	Logger   *zap.Logger
}

// gatewayEvent is the part of a PSP event paybridge reads: which operation
// (by the idempotency key paybridge sent) changed.
type gatewayEvent struct {
	Type string `json:"type"`
	Data struct {
		Key string `json:"key"`
	} `json:"data"`
}

func (g *GatewayRoutes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, code, msg string) { writeAnswer(w, gatewayError(status, code, msg)) }
	if g.Checkout {
		if id, confirm, ok := checkoutPath(r.URL.Path); ok {
			g.serveCheckout(w, r, id, confirm)
			return
		}
	}
	if path.Base(r.URL.Path) != "webhook" {
		reply(http.StatusNotFound, "not_found", "unknown gateway route")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(http.StatusMethodNotAllowed, "method_not_allowed", "only POST is allowed")
		return
	}
	body, err := readBody(r, DefaultMaxBodySize)
	if err != nil {
		reply(bodyProblem(err))
		return
	}
	status, code, msg := g.handleEvent(r.Context(), r.Header.Get(signature.Header), body)
	if status == http.StatusOK && code == "" {
		writeAnswer(w, payment.Answer{Status: http.StatusOK, Body: []byte(`{"received":true}`)})
		return
	}
	reply(status, code, msg)
}

// handleEvent verifies and acts on one PSP event. code is "" when it was
// processed.
func (g *GatewayRoutes) handleEvent(ctx context.Context, sig string, body []byte) (status int, code, msg string) {
	if len(g.Secrets) == 0 || signature.Verify(sig, body, g.Secrets, time.Now(), WebhookTolerance) != nil {
		return http.StatusUnauthorized, "invalid_signature", "missing, wrong or expired " + signature.Header
	}
	var ev gatewayEvent
	if json.Unmarshal(body, &ev) != nil || ev.Data.Key == "" {
		return http.StatusBadRequest, "invalid_request", "expected {\"type\":…,\"data\":{\"key\":…}}"
	}
	engine, err := g.Engine(ctx)
	if err != nil {
		return http.StatusServiceUnavailable, "unavailable", unavailableMessage
	}
	id, err := engine.PaymentByToken(ctx, ev.Data.Key)
	if err != nil {
		// Unknown keys are acknowledged: the PSP must not retry forever
		// for an operation that is not ours.
		return http.StatusOK, "ignored", "no payment has this key"
	}
	if err := engine.ReconcilePayment(ctx, id); err != nil {
		return http.StatusInternalServerError, "internal_error", "the event could not be processed; retry"
	}
	return http.StatusOK, "", ""
}

func gatewayError(status int, code, msg string) payment.Answer {
	return payment.Answer{Status: status, Body: encode(map[string]string{"error": code, "message": msg})}
}
