package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// Openfront has no REST webhook route: the only way in is the GraphQL
// mutation handlePaymentProviderWebhook(providerId, event, headers), which
// calls the provider's handle-webhook with {provider, event, headers} and
// acts on the {type, resource} it answers. Openfront parses `event` and
// stringifies it again on the way, so the signature in `headers` is over
// bytes that must survive that round trip (marshalJS).

// OpenfrontRelay is where an Openfront handler relays its payments' events.
type OpenfrontRelay struct {
	// GraphQLURL is Openfront's GraphQL endpoint, e.g.
	// https://shop.example.com/api/graphql.
	GraphQLURL string
	// ProviderID is the id of the Openfront PaymentProvider (not its code).
	ProviderID string
	// Header is added to every relay request (e.g. an Authorization an
	// Openfront deployment requires for the mutation).
	Header http.Header
}

// relayMutation selects WebhookResult's fields; Openfront reports failure
// by throwing, which GraphQL answers as a 200 with `errors`.
const relayMutation = `mutation PaybridgeRelay($providerId: ID!, $event: JSON!, $headers: JSON!) { handlePaymentProviderWebhook(providerId: $providerId, event: $event, headers: $headers) { success message error } }`

// EventIDHeader carries the relayed event's id beside its signature.
const EventIDHeader = "Paybridge-Event-Id"

// RelayDestination renders a queued canonical event as the GraphQL request
// that relays it, signing the event now with the gateway's first webhook
// secret. It fails only when the event cannot be signed or read, which a
// reload (adding a webhook_secret) may fix.
func (h *Openfront) RelayDestination(relay *OpenfrontRelay, body []byte, now time.Time) (url string, header http.Header, request []byte, err error) {
	ev, err := pspEventFromCanonical(body)
	if err != nil {
		return "", nil, nil, fmt.Errorf("openfront relay: unreadable queued event: %v", err)
	}
	event, err := marshalJS(ev)
	if err != nil {
		return "", nil, nil, err
	}
	if len(h.WebhookSecrets) == 0 {
		return "", nil, nil, errors.New("openfront relay: the gateway has no webhook_secret to sign events with")
	}
	headers := map[string]string{
		strings.ToLower(signature.Header): signature.Sign(h.WebhookSecrets[:1], now, event),
		strings.ToLower(EventIDHeader):    ev.ID,
	}
	vars, err := marshalJS(map[string]any{"providerId": relay.ProviderID, "headers": headers})
	if err != nil {
		return "", nil, nil, err
	}
	// The event goes in as the exact bytes that were signed.
	// vars[1:] is `"headers":…,"providerId":…}`, closing "variables".
	request = fmt.Appendf(nil, `{"query":%s,"variables":{"event":%s,%s}`, encode(relayMutation), event, vars[1:])
	return relay.GraphQLURL, relay.Header.Clone(), request, nil
}

// CheckGraphQL reports a GraphQL answer that carries errors, or a
// WebhookResult with success false, as not delivered.
func CheckGraphQL(answer []byte) error {
	var a struct {
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
		Data struct {
			Result *struct {
				Success bool   `json:"success"`
				Error   string `json:"error"`
			} `json:"handlePaymentProviderWebhook"`
		} `json:"data"`
	}
	if err := json.Unmarshal(answer, &a); err != nil {
		return errors.New("the answer is not GraphQL JSON")
	}
	if len(a.Errors) > 0 {
		return fmt.Errorf("GraphQL error: %s", truncateText(a.Errors[0].Message, 200))
	}
	if a.Data.Result == nil {
		return errors.New("no handlePaymentProviderWebhook result in the answer")
	}
	if !a.Data.Result.Success {
		return fmt.Errorf("handlePaymentProviderWebhook: success false: %s", truncateText(a.Data.Result.Error, 200))
	}
	return nil
}

// ofWebhookAnswer holds the documented fields and the ones Openfront's
// code destructures (type, resource).
type ofWebhookAnswer struct {
	Verified            bool        `json:"verified"`
	EventType           string      `json:"eventType,omitempty"`
	PaymentID           string      `json:"paymentId,omitempty"`
	ShouldUpdatePayment bool        `json:"shouldUpdatePayment"`
	Type                string      `json:"type,omitempty"`
	Resource            *ofResource `json:"resource,omitempty"`
	IsValid             bool        `json:"isValid"`
	Error               string      `json:"error,omitempty"`
}

// ofResource is what Openfront reads: id (passed back to capture-payment),
// amount (an integer), metadata, and error for a decline.
type ofResource struct {
	ID       string            `json:"id"`
	Amount   int64             `json:"amount"`
	Currency string            `json:"currency"`
	Status   string            `json:"status"`
	Metadata map[string]string `json:"metadata"`
	Error    *pspEventError    `json:"error,omitempty"`
}

// handleWebhook verifies a PSP event that Openfront hands back and tells
// Openfront what it means. The signature is over the event's bytes exactly
// as received: a re-serialisation by Go could differ from JavaScript's.
func (h *Openfront) handleWebhook(req *ofRequest) payment.Answer {
	forbidden := func(msg string) payment.Answer {
		return payment.Answer{Status: http.StatusForbidden, Body: encode(ofWebhookAnswer{Error: msg})}
	}
	if len(req.Event) == 0 || string(req.Event) == "null" {
		return ofError(http.StatusBadRequest, "event is required")
	}
	sig := headerValue(req.Headers, signature.Header)
	if sig == "" {
		return forbidden("missing " + signature.Header + " in headers")
	}
	if len(h.WebhookSecrets) == 0 || signature.Verify(sig, req.Event, h.WebhookSecrets, time.Now(), WebhookTolerance) != nil {
		return forbidden("invalid webhook signature")
	}
	var ev pspEvent
	if err := json.Unmarshal(req.Event, &ev); err != nil || ev.Type == "" || ev.Data.PaymentID == "" {
		return ofError(http.StatusBadRequest, "event must be a paybridge PSP event: {id, type, created, data:{payment_id, …}}")
	}
	meta := ev.Data.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	update := false
	for _, t := range relayedTypes {
		update = update || t == ev.Type
	}
	return payment.Answer{Status: http.StatusOK, Body: encode(ofWebhookAnswer{
		Verified:            true,
		EventType:           ev.Type,
		PaymentID:           ev.Data.PaymentID,
		ShouldUpdatePayment: update,
		Type:                ev.Type,
		Resource: &ofResource{
			ID: ev.Data.PaymentID, Amount: ev.Data.Amount, Currency: ev.Data.Currency,
			Status: ev.Data.Status, Metadata: meta, Error: ev.Data.Error,
		},
		IsValid: true,
	})}
}

// headerValue finds name in a JSON object of headers, in any case; a value
// may be a string or a list of strings (Node's IncomingHttpHeaders).
func headerValue(raw json.RawMessage, name string) string {
	var headers map[string]json.RawMessage
	if json.Unmarshal(raw, &headers) != nil {
		return ""
	}
	for k, v := range headers {
		if !strings.EqualFold(k, name) {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
		var list []string
		if json.Unmarshal(v, &list) == nil && len(list) > 0 {
			return list[0]
		}
	}
	return ""
}
