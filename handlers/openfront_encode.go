package handlers

import (
	"net/http"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Openfront's payment status enum (its spelling: "canceled").
const (
	ofPending    = "pending"
	ofAuthorized = "authorized"
	ofCaptured   = "captured"
	ofFailed     = "failed"
	ofCanceled   = "canceled"
)

// ofStatusOf maps a payment's status to Openfront's enum. Refunds leave a
// payment "captured": the enum has no refunded state.
func ofStatusOf(s payment.Status) string {
	switch s {
	case payment.StatusAuthorized:
		return ofAuthorized
	case payment.StatusCaptured:
		return ofCaptured
	case payment.StatusRefused:
		return ofFailed
	case payment.StatusCancelled:
		return ofCanceled
	}
	return ofPending // open (the customer has not paid) or pending
}

func openfrontStatusOfEvent(t payment.EventType) string {
	switch t {
	case payment.PaymentAuthorized:
		return ofAuthorized
	case payment.PaymentRefused:
		return ofFailed
	case payment.PaymentCaptured, payment.PaymentRefunded:
		return ofCaptured
	case payment.PaymentCancelled:
		return ofCanceled
	}
	return ofPending
}

func ofError(status int, msg string) payment.Answer {
	return payment.Answer{Status: status, Body: encode(map[string]string{"error": msg})}
}

// ofRefusalStatus maps the engine's refusals to HTTP statuses. Declines and
// an unreachable PSP are not here: see ofOutcome.
var ofRefusalStatus = map[payment.ErrorKind]int{
	payment.KindInvalidRequest: http.StatusBadRequest,
	payment.KindInvalidAmount:  http.StatusBadRequest,
	payment.KindNotFound:       http.StatusNotFound,
	payment.KindInvalidState:   http.StatusConflict,
	payment.KindExceedsBalance: http.StatusUnprocessableEntity,
}

// ofOutcome classifies a verdict: a refusal by paybridge's rules is an
// HTTP error; an unreachable PSP is 502; anything the PSP answered, a
// decline included, is a 200 (Openfront would drop a non-2xx body).
func ofOutcome(v payment.Verdict) (errAnswer *payment.Answer, state string) {
	if v.Err != nil {
		if v.Err.Kind == payment.KindUnavailable {
			a := ofError(http.StatusBadGateway, "the payment gateway did not answer in time; its amount stays reserved until paybridge has asked the gateway, which may have carried it out; check the payment's status before trying again")
			return &a, ""
		}
		if status, ok := ofRefusalStatus[v.Err.Kind]; ok {
			a := ofError(status, v.Err.Message)
			return &a, ""
		}
		return nil, ofFailed
	}
	if v.Tx != nil && v.Tx.State == payment.Succeeded {
		return nil, ""
	}
	return nil, ofPending
}

type ofCreateAnswer struct {
	SessionData ofSession `json:"sessionData"`
	PaymentID   string    `json:"paymentId"`
	// The flat fields are what Openfront's storefront reads from the
	// stored session data.
	ClientSecret string `json:"clientSecret"`
	Status       string `json:"status"`
	Amount       int64  `json:"amount"`
	Currency     string `json:"currency"`
	CheckoutURL  string `json:"checkoutUrl,omitempty"`
}

type ofSession struct {
	PaymentID    string `json:"paymentId"`
	ClientSecret string `json:"clientSecret"`
	CheckoutURL  string `json:"checkoutUrl,omitempty"`
}

func (h *Openfront) renderCreate(v payment.Verdict) payment.Answer {
	if v.Err != nil {
		return ofError(http.StatusBadRequest, v.Err.Message)
	}
	p := v.Payment
	page := ""
	if h.PaymentPage != nil {
		page = h.PaymentPage(p.ID)
	}
	// The client secret names the session to the storefront, Stripe's way;
	// paybridge never accepts it as a credential.
	secret := p.ID + "_secret_" + randomHex(12)
	return payment.Answer{Status: http.StatusOK, Body: encode(ofCreateAnswer{
		SessionData:  ofSession{PaymentID: p.ID, ClientSecret: secret, CheckoutURL: page},
		PaymentID:    p.ID,
		ClientSecret: secret,
		Status:       ofStatusOf(p.Status),
		Amount:       p.Amount,
		Currency:     p.Currency,
		CheckoutURL:  page,
	})}
}

// ofOpData is the `data` Openfront stores on its payment after a capture.
type ofOpData struct {
	PaymentID    string `json:"paymentId"`
	Transaction  string `json:"transactionId"`
	PSPReference string `json:"pspReference,omitempty"`
	Code         string `json:"code,omitempty"`
}

// ofOpResult is what capture and refund answers share, after their own
// fields (success first, as the docs show it).
type ofOpResult struct {
	Status   string   `json:"status"`
	Amount   int64    `json:"amount"`
	Currency string   `json:"currency"`
	Data     ofOpData `json:"data"`
	Error    string   `json:"error,omitempty"`
}

type ofCaptureAnswer struct {
	Success        bool   `json:"success"`
	TransactionID  string `json:"transactionId"`
	CapturedAmount int64  `json:"capturedAmount"`
	ofOpResult
}

type ofRefundAnswer struct {
	Success        bool   `json:"success"`
	RefundID       string `json:"refundId"`
	RefundedAmount int64  `json:"refundedAmount"`
	ofOpResult
}

// ofOperation renders the shared part of a capture's or refund's answer;
// errAnswer is set for an HTTP error instead. done says the operation
// succeeded; successStatus is the status then.
func ofOperation(v payment.Verdict, successStatus string) (errAnswer *payment.Answer, res ofOpResult, done bool) {
	a, state := ofOutcome(v)
	if a != nil {
		return a, res, false
	}
	t, p := v.Tx, v.Payment
	res = ofOpResult{
		Status:   successStatus,
		Amount:   t.Amount,
		Currency: p.Currency,
		Data:     ofOpData{PaymentID: p.ID, Transaction: t.Token, PSPReference: t.PSPRef},
	}
	switch state {
	case ofFailed:
		res.Status, res.Data.Code, res.Error = ofFailed, v.Err.Code, v.Err.Message
	case ofPending:
		res.Status = ofPending
	}
	return nil, res, state == ""
}

func renderCapture(v payment.Verdict) payment.Answer {
	a, res, done := ofOperation(v, ofCaptured)
	if a != nil {
		return *a
	}
	ans := ofCaptureAnswer{Success: done, TransactionID: v.Tx.Token, ofOpResult: res}
	if done {
		ans.CapturedAmount = v.Tx.Amount
	}
	return payment.Answer{Status: http.StatusOK, Body: encode(ans)}
}

func renderRefund(v payment.Verdict) payment.Answer {
	var status string
	if v.Payment != nil { // a refusal may come before any payment
		status = ofStatusOf(v.Payment.Status)
	}
	a, res, done := ofOperation(v, status)
	if a != nil {
		return *a
	}
	ans := ofRefundAnswer{Success: done, RefundID: v.Tx.Token, ofOpResult: res}
	if done {
		ans.RefundedAmount = v.Tx.Amount
	}
	return payment.Answer{Status: http.StatusOK, Body: encode(ans)}
}

type ofStatusAnswer struct {
	Status         string `json:"status"`
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	LastUpdated    string `json:"lastUpdated"`
	PaymentID      string `json:"paymentId"`
	CapturedAmount int64  `json:"capturedAmount"`
	RefundedAmount int64  `json:"refundedAmount"`
}

func renderStatus(p *payment.Payment) payment.Answer {
	return payment.Answer{Status: http.StatusOK, Body: encode(ofStatusAnswer{
		Status:         ofStatusOf(p.Status),
		Amount:         p.Amount,
		Currency:       p.Currency,
		LastUpdated:    p.UpdatedAt.UTC().Format(time.RFC3339Nano),
		PaymentID:      p.ID,
		CapturedAmount: p.Captured,
		RefundedAmount: p.Refunded,
	})}
}
