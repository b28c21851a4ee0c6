package handlers

import (
	"encoding/json"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// PSP events: what the sandbox's checkout emits into its gateway's webhook
// route, and what paybridge relays to Openfront. One shape for both, so a
// relayed event reads like the PSP's own. The type names are the ones
// Openfront's code matches (Stripe's where Openfront uses Stripe's).
const (
	EventAuthorized       = "payment_intent.succeeded"
	EventAuthorizeFailed  = "payment_intent.payment_failed"
	EventAuthorizePending = "payment_intent.processing"
	EventAuthRequired     = "payment_intent.requires_action"
	EventCaptured         = "payment.captured"
	EventRefunded         = "payment.refunded"
	EventCanceled         = "payment.canceled"
)

// pspEvent is a PSP event. Integers only and no map with integer-like keys,
// so marshalJS output survives JavaScript's parse and stringify.
type pspEvent struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Created int64        `json:"created"`
	Data    pspEventData `json:"data"`
}

type pspEventData struct {
	// Key is the PSP idempotency key of the operation that changed; the
	// webhook route resolves the payment by it.
	Key       string            `json:"key,omitempty"`
	PaymentID string            `json:"payment_id"`
	Amount    int64             `json:"amount"`
	Currency  string            `json:"currency"`
	Status    string            `json:"status"`
	Error     *pspEventError    `json:"error,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

type pspEventError struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

// relayedTypes maps the canonical events relayed to Openfront to their PSP
// event type. Other state changes (a capture started, a refund declined)
// are not relayed: Openfront's code has nothing to do with them.
var relayedTypes = map[payment.EventType]string{
	payment.PaymentAuthorized: EventAuthorized,
	payment.PaymentRefused:    EventAuthorizeFailed,
	payment.PaymentCaptured:   EventCaptured,
	payment.PaymentRefunded:   EventRefunded,
	payment.PaymentCancelled:  EventCanceled,
}

// RelayedEventTypes lists the canonical event types relayed to Openfront.
func RelayedEventTypes() map[payment.EventType]bool {
	out := make(map[payment.EventType]bool, len(relayedTypes))
	for t := range relayedTypes {
		out[t] = true
	}
	return out
}

// canonicalEvent is the part of payment.EventBody a relay reads.
type canonicalEvent struct {
	ID         string            `json:"id"`
	Type       payment.EventType `json:"type"`
	OccurredAt time.Time         `json:"occurred_at"`
	Purchase   struct {
		CartID       string `json:"cartId"`
		CollectionID string `json:"paymentCollectionId"`
	} `json:"purchase"`
	Payment struct {
		ID string `json:"id"`
	} `json:"payment"`
	Amount      payment.Money     `json:"amount"`
	PaymentData map[string]string `json:"paymentData"`
}

// pspEventFromCanonical renders a queued canonical event body as the PSP
// event relayed for it. It is a pure function of the stored body, so every
// attempt sends the same bytes.
func pspEventFromCanonical(body []byte) (pspEvent, error) {
	var c canonicalEvent
	if err := json.Unmarshal(body, &c); err != nil {
		return pspEvent{}, err
	}
	ev := pspEvent{
		ID:      c.ID,
		Type:    relayedTypes[c.Type],
		Created: c.OccurredAt.Unix(),
		Data: pspEventData{
			PaymentID: c.Payment.ID,
			Amount:    c.Amount.Amount,
			Currency:  c.Amount.Currency,
			Status:    openfrontStatusOfEvent(c.Type),
		},
	}
	if ev.Type == "" {
		ev.Type = "payment." + string(c.Type)
	}
	meta := map[string]string{}
	if c.Purchase.CartID != "" {
		meta["cartId"] = c.Purchase.CartID
	}
	if c.Purchase.CollectionID != "" {
		meta["paymentCollectionId"] = c.Purchase.CollectionID
	}
	if len(meta) > 0 {
		ev.Data.Metadata = meta
	}
	if code := c.PaymentData["decline_code"]; code != "" {
		ev.Data.Error = &pspEventError{Code: code, Message: c.PaymentData["message"]}
	}
	return ev, nil
}
