package handlers

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
)

// PlatformOpenfront names Openfront in payments, events and the outbox.
const PlatformOpenfront = "openfront"

// Openfront serves Openfront's custom HTTP payment provider contract: six
// functions chosen by the last path segment. It satisfies both the
// documented contract and what Openfront's code really sends and reads
// (contracts/openfront.md): Openfront ignores the body of a non-2xx answer,
// so a PSP decline is a 200 with success:false, and only a caller's mistake
// is an HTTP error.
type Openfront struct {
	// Name identifies this handler (one per Openfront store); payments and
	// relayed events refer to it.
	Name    string
	Gateway string
	// APIKeys: the provider's credentials.apiKey (or a Bearer token) must
	// equal one of them. Openfront signs nothing, so this is its only proof.
	APIKeys [][]byte
	// DashboardURL is the generate-payment-link template; {payment_id} is
	// replaced. Empty: the gateway's own payment page.
	DashboardURL string
	// PaymentPage returns the gateway's page where the customer pays (the
	// sandbox's checkout), or "" when the gateway has none.
	PaymentPage func(paymentID string) string
	// WebhookSecrets are the gateway's: the first signs relayed events,
	// all verify handle-webhook calls.
	WebhookSecrets [][]byte
	MaxBodySize    int64
	Policy         payment.Policy
	Engine         func(context.Context) (*payment.Engine, error)
	Logger         *zap.Logger
}

const (
	ofCreate  = "create-payment"
	ofCapture = "capture-payment"
	ofRefund  = "refund-payment"
	ofStatus  = "get-payment-status"
	ofLink    = "generate-payment-link"
	ofWebhook = "handle-webhook"
)

var ofActions = map[string]bool{ofCreate: true, ofCapture: true, ofRefund: true, ofStatus: true, ofLink: true, ofWebhook: true}

func (h *Openfront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAnswer(w, ofError(http.StatusMethodNotAllowed, "method not allowed; use POST"))
		return
	}
	action := path.Base(r.URL.Path)
	if !ofActions[action] {
		writeAnswer(w, ofError(http.StatusNotFound, "unknown function; use create-payment, capture-payment, refund-payment, get-payment-status, generate-payment-link or handle-webhook"))
		return
	}
	body, err := readBody(r, h.maxBody())
	if err != nil {
		status, _, msg := bodyProblem(err)
		writeAnswer(w, ofError(status, msg))
		return
	}
	req, perr := decodeOpenfront(body)
	if perr != nil {
		writeAnswer(w, ofError(http.StatusBadRequest, perr.msg))
		return
	}
	if !h.authenticated(r, req) {
		writeAnswer(w, ofError(http.StatusUnauthorized, "invalid API key: set the provider's credentials.apiKey (or an Authorization: Bearer header) to one of paybridge's api_key values"))
		return
	}
	if action == ofWebhook {
		writeAnswer(w, h.handleWebhook(req))
		return
	}
	engine, err := h.Engine(r.Context())
	if err != nil {
		h.ServeUnavailable(w)
		return
	}
	var ans payment.Answer
	switch action {
	case ofCreate:
		ans, err = h.create(r.Context(), engine, req)
	case ofCapture:
		ans, err = h.capture(r.Context(), engine, req)
	case ofRefund:
		ans, err = h.refund(r.Context(), engine, req, r.Header.Get("Idempotency-Key"))
	case ofStatus:
		ans, err = h.status(r.Context(), engine, req)
	case ofLink:
		ans, err = h.link(r.Context(), engine, req)
	}
	if inProgress(w, err, func(msg string) payment.Answer { return ofError(http.StatusServiceUnavailable, msg) }) {
		return
	}
	if err != nil {
		h.Logger.Error("openfront call failed in the store", zap.String("handler", h.Name), zap.String("action", action), zap.Error(err))
		writeAnswer(w, ofError(http.StatusInternalServerError, "the payment could not be recorded; nothing was done"))
		return
	}
	writeAnswer(w, ans)
}

// authenticated checks the API key in constant time against every
// configured key, whichever matches.
func (h *Openfront) authenticated(r *http.Request, req *ofRequest) bool {
	var candidates []string
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		candidates = append(candidates, strings.TrimSpace(auth[7:]))
	}
	if k := req.apiKey(); k != "" {
		candidates = append(candidates, k)
	}
	ok := 0
	for _, c := range candidates {
		for _, key := range h.APIKeys {
			ok |= subtle.ConstantTimeCompare([]byte(c), key)
		}
	}
	return ok == 1
}

func (h *Openfront) maxBody() int64 {
	if h.MaxBodySize > 0 {
		return h.MaxBodySize
	}
	return DefaultMaxBodySize
}

func (h *Openfront) create(ctx context.Context, engine *payment.Engine, req *ofRequest) (payment.Answer, error) {
	if req.Cart == nil || req.Cart.ID == "" {
		return ofError(http.StatusBadRequest, "cart.id is required"), nil
	}
	amount, currency, perr := req.money()
	if perr != nil {
		return ofError(http.StatusBadRequest, perr.msg), nil
	}
	purchase := payment.Purchase{CartID: req.Cart.ID}
	if req.Cart.PaymentCollection != nil {
		purchase.CollectionID = req.Cart.PaymentCollection.ID
	}
	return engine.Open(ctx, payment.OpenRequest{
		Platform: PlatformOpenfront, Handler: h.Name, Gateway: h.Gateway,
		Key:    h.Name + "|create|" + req.Cart.ID + "|" + strconv.FormatInt(amount, 10) + "|" + currency,
		Amount: amount, Currency: currency, Purchase: purchase,
	}, h.renderCreate)
}

// payment finds the payment named by paymentId, if it is this handler's.
func (h *Openfront) payment(ctx context.Context, engine *payment.Engine, req *ofRequest) (*payment.Payment, *payment.Answer, error) {
	if req.PaymentID == "" {
		a := ofError(http.StatusBadRequest, "paymentId is required")
		return nil, &a, nil
	}
	p, err := engine.Payment(ctx, req.PaymentID)
	if errors.Is(err, payment.ErrNotFound) || (err == nil && p.Handler != h.Name) {
		a := ofError(http.StatusNotFound, "no payment has this paymentId")
		return nil, &a, nil
	}
	return p, nil, err
}

// paymentAndAmount reads what capture and refund both need: their payment,
// and the amount, which they require.
func (h *Openfront) paymentAndAmount(ctx context.Context, engine *payment.Engine, req *ofRequest) (*payment.Payment, int64, *payment.Answer, error) {
	p, refusal, err := h.payment(ctx, engine, req)
	if refusal != nil || err != nil {
		return nil, 0, refusal, err
	}
	amount, perr := requiredAmount(req.Amount)
	if perr != nil {
		a := ofError(http.StatusBadRequest, perr.msg)
		return nil, 0, &a, nil
	}
	return p, amount, nil, nil
}

func (h *Openfront) capture(ctx context.Context, engine *payment.Engine, req *ofRequest) (payment.Answer, error) {
	p, amount, refusal, err := h.paymentAndAmount(ctx, engine, req)
	if refusal != nil || err != nil {
		return deref(refusal), err
	}
	// Openfront captures when it hears the authorization succeeded, and may
	// hear that more than once: capturing what is already captured returns
	// the existing capture instead of a 422.
	if done := fullyCaptured(p, amount); done != nil {
		return renderCapture(payment.Verdict{Payment: p, Tx: done}), nil
	}
	auth := p.Authorization()
	if auth == nil {
		return ofError(http.StatusConflict, "the customer has not paid yet: nothing is authorized"), nil
	}
	return engine.Do(ctx, payment.Request{
		Kind: payment.Capture, Platform: PlatformOpenfront, Handler: h.Name, Gateway: p.Gateway,
		Key:   h.Name + "|capture|" + p.ID + "|" + strconv.FormatInt(amount, 10),
		Token: auth.Token, Amount: amount, Policy: h.Policy,
	}, renderCapture)
}

// fullyCaptured returns the latest capture of amount when nothing is left
// to capture, else nil: another capture's answer would tell Openfront an
// amount it did not ask for.
func fullyCaptured(p *payment.Payment, amount int64) *payment.Transaction {
	if p.Status != payment.StatusCaptured || p.Capturable() > 0 {
		return nil
	}
	// A capture in flight is counted as taken but may yet fail: the call is
	// for the engine, which waits for it when it is the same call.
	for _, t := range p.Txs {
		if t.Kind == payment.Capture && t.Open() {
			return nil
		}
	}
	for i := len(p.Txs) - 1; i >= 0; i-- {
		if t := p.Txs[i]; t.Kind == payment.Capture && t.State == payment.Succeeded && t.Amount == amount {
			return t
		}
	}
	return nil
}

func (h *Openfront) refund(ctx context.Context, engine *payment.Engine, req *ofRequest, headerKey string) (payment.Answer, error) {
	p, amount, refusal, err := h.paymentAndAmount(ctx, engine, req)
	if refusal != nil || err != nil {
		return deref(refusal), err
	}
	capture := refundTarget(p, amount)
	if capture == nil {
		return ofError(http.StatusConflict, "nothing was captured, so nothing can be refunded"), nil
	}
	// Openfront refunds a payment, but the PSP refunds one capture at a
	// time: after partial captures, a refund larger than what any one of
	// them has left is refused, and the engine's message would only name
	// the capture it was taken from.
	if left := p.Refundable(capture); amount > left && amount <= refundableInAll(p) {
		return ofError(http.StatusUnprocessableEntity, fmt.Sprintf(
			"refund of %d exceeds the %d %s left on any one capture: a refund is taken from one capture, so refund this payment in parts of at most %d",
			amount, left, p.Currency, left)), nil
	}
	// Without a key every call is a new refund, as Openfront intends (it
	// sends none); the engine still never refunds beyond the capture.
	key := req.IdempotencyKey
	if key == "" {
		key = headerKey
	}
	if key == "" {
		key = "unkeyed-" + randomHex(16)
	}
	return engine.Do(ctx, payment.Request{
		Kind: payment.Refund, Platform: PlatformOpenfront, Handler: h.Name, Gateway: p.Gateway,
		Key:   h.Name + "|refund|" + p.ID + "|" + key,
		Token: capture.Token, Amount: amount, Policy: h.Policy,
	}, renderRefund)
}

// refundTarget picks the capture a refund of amount is taken from: the
// first with enough left, else the one with most left (which the engine
// then refuses with the balance in its message).
func refundTarget(p *payment.Payment, amount int64) *payment.Transaction {
	var best *payment.Transaction
	var bestLeft int64 = -1
	for _, t := range p.Txs {
		if t.Kind != payment.Capture || t.State != payment.Succeeded {
			continue
		}
		left := p.Refundable(t)
		if left >= amount {
			return t
		}
		if left > bestLeft {
			best, bestLeft = t, left
		}
	}
	return best
}

// refundableInAll is what may still be refunded of all of p's captures.
func refundableInAll(p *payment.Payment) int64 {
	var left int64
	for _, t := range p.Txs {
		if t.Kind == payment.Capture && t.State == payment.Succeeded {
			left += p.Refundable(t)
		}
	}
	return left
}

func (h *Openfront) status(ctx context.Context, engine *payment.Engine, req *ofRequest) (payment.Answer, error) {
	p, refusal, err := h.payment(ctx, engine, req)
	if refusal != nil || err != nil {
		return deref(refusal), err
	}
	return renderStatus(p), nil
}

func (h *Openfront) link(ctx context.Context, engine *payment.Engine, req *ofRequest) (payment.Answer, error) {
	p, refusal, err := h.payment(ctx, engine, req)
	if refusal != nil || err != nil {
		return deref(refusal), err
	}
	url := ""
	if h.DashboardURL != "" {
		url = strings.ReplaceAll(h.DashboardURL, "{payment_id}", p.ID)
	} else if h.PaymentPage != nil {
		url = h.PaymentPage(p.ID)
	}
	if url == "" {
		return ofError(http.StatusNotFound, "no dashboard_url is configured and the gateway has no payment page"), nil
	}
	return payment.Answer{Status: http.StatusOK, Body: encode(map[string]string{"url": url})}, nil
}

func deref(a *payment.Answer) payment.Answer {
	if a == nil {
		return payment.Answer{}
	}
	return *a
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
