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

// GatewayRoutes serves what a PSP reaches: its webhook (POST …/webhook),
// signed with the timestamped scheme. A webhook only says "look now": the
// reconciler asks the PSP itself, so a forged or stale event cannot settle
// anything, and a lost one is caught on the next reconcile pass.
type GatewayRoutes struct {
	Secrets [][]byte
	Engine  func(context.Context) (*payment.Engine, error)
	Logger  *zap.Logger
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
	reply := func(status int, code, msg string) {
		writeAnswer(w, payment.Answer{Status: status, Body: encode(map[string]string{"error": code, "message": msg})})
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
	if len(g.Secrets) == 0 || signature.Verify(r.Header.Get(signature.Header), body, g.Secrets, time.Now(), WebhookTolerance) != nil {
		reply(http.StatusUnauthorized, "invalid_signature", "missing, wrong or expired "+signature.Header)
		return
	}
	var ev gatewayEvent
	if json.Unmarshal(body, &ev) != nil || ev.Data.Key == "" {
		reply(http.StatusBadRequest, "invalid_request", "expected {\"type\":…,\"data\":{\"key\":…}}")
		return
	}
	engine, err := g.Engine(r.Context())
	if err != nil {
		reply(http.StatusServiceUnavailable, "unavailable", "paybridge is starting; try again")
		return
	}
	id, err := engine.PaymentByToken(r.Context(), ev.Data.Key)
	if err != nil {
		// Unknown keys are acknowledged: the PSP must not retry forever
		// for an operation that is not ours.
		reply(http.StatusOK, "ignored", "no payment has this key")
		return
	}
	if err := engine.ReconcilePayment(r.Context(), id); err != nil {
		reply(http.StatusInternalServerError, "internal_error", "the event could not be processed; retry")
		return
	}
	writeAnswer(w, payment.Answer{Status: http.StatusOK, Body: []byte(`{"received":true}`)})
}
