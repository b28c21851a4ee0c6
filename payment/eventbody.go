package payment

import (
	"encoding/json"
	"time"
)

// EventKind is the outbox Kind of payment events sent to listeners.
const EventKind = "event"

// Listener is an events endpoint: it hears about every state change whose
// type it wants (nil Types: all), in order per payment.
type Listener struct {
	Name  string
	Types map[EventType]bool
	// Kind is the outbox Kind of its messages, which decides who renders
	// and signs them at send time; "" is EventKind (canonical events).
	Kind string
	// Handler, when set, limits it to the payments of one platform
	// handler (a platform's relay of its own payments).
	Handler string
}

func (l Listener) wants(p *Payment, t EventType) bool {
	return (l.Handler == "" || l.Handler == p.Handler) && (l.Types == nil || l.Types[t])
}

func (l Listener) kind() string {
	if l.Kind == "" {
		return EventKind
	}
	return l.Kind
}

// The canonical event body: Front-Commerce's vocabulary, plus what a
// listener needs and the vocabulary leaves open (id, sequence, amount).
type eventBody struct {
	ID          string            `json:"id"`
	Type        EventType         `json:"type"`
	OccurredAt  string            `json:"occurred_at"`
	Sequence    int64             `json:"sequence"`
	Purchase    eventPurchase     `json:"purchase"`
	Payment     eventPayment      `json:"payment"`
	Amount      Money             `json:"amount"`
	PaymentData map[string]string `json:"paymentData"`
}

type eventPurchase struct {
	OrderID      string `json:"orderId,omitempty"`
	OrderNumber  string `json:"orderNumber,omitempty"`
	CartID       string `json:"cartId,omitempty"`
	CollectionID string `json:"paymentCollectionId,omitempty"`
}

type eventPayment struct {
	ID               string `json:"id"`
	Platform         string `json:"platform"`
	Gateway          string `json:"gateway"`
	GatewayReference string `json:"gateway_reference,omitempty"`
}

// EventBody renders ev, an event of p, as listeners receive it.
func EventBody(p *Payment, ev Event) []byte {
	t := p.TxByID(ev.TxID)
	ref := ""
	data := map[string]string{}
	if t != nil {
		ref = t.PSPRef
		if t.State == Failed && t.Code != "" {
			data["decline_code"] = t.Code
		}
		if t.Message != "" {
			data["message"] = t.Message
		}
	}
	auth := p.Authorization()
	if ref == "" && auth != nil {
		ref = auth.PSPRef
	}
	if ref != "" {
		data["psp_reference"] = ref
	}
	// Card details live on the authorization; later operations reuse them.
	if auth != nil {
		for _, k := range []string{"brand", "last4"} {
			if v := auth.Details[k]; v != "" {
				data[k] = v
			}
		}
	}
	purchase := eventPurchase{OrderID: p.Purchase.OrderID, OrderNumber: p.Purchase.OrderNumber}
	if purchase.OrderID == "" {
		purchase = eventPurchase{CartID: p.Purchase.CartID, CollectionID: p.Purchase.CollectionID}
	}
	b, err := json.Marshal(eventBody{
		ID:          ev.ID,
		Type:        ev.Type,
		OccurredAt:  ev.OccurredAt.UTC().Format(time.RFC3339),
		Sequence:    ev.Sequence,
		Purchase:    purchase,
		Payment:     eventPayment{ID: p.ID, Platform: p.Platform, Gateway: p.Gateway, GatewayReference: ref},
		Amount:      Money{Amount: ev.Amount, Currency: p.Currency},
		PaymentData: data,
	})
	if err != nil {
		panic("payment: cannot encode an event: " + err.Error()) // plain strings and numbers only
	}
	return b
}

// emit queues, for every listener that wants it, each event p gained since
// it had `before` events. It runs in the store transaction that recorded
// them, so an event is queued exactly when its state change is durable.
func (e *Engine) emit(tx Tx, p *Payment, before int, now time.Time) error {
	if before >= len(p.Events) {
		return nil
	}
	listeners := e.settings().Listeners
	for _, ev := range p.Events[before:] {
		var body []byte
		for _, l := range listeners {
			if !l.wants(p, ev.Type) {
				continue
			}
			if body == nil {
				body = EventBody(p, ev)
			}
			if err := tx.Enqueue(&Message{Kind: l.kind(), Target: l.Name, PaymentID: p.ID, Body: body, CreatedAt: now}); err != nil {
				return err
			}
		}
	}
	return nil
}
