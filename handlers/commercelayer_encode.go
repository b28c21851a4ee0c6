package handlers

import (
	"encoding/json"
	"net/http"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Commerce Layer's answer shape, fields in the order its docs show them.
type clResponse struct {
	Success bool     `json:"success"`
	Data    *clData  `json:"data,omitempty"`
	Error   *clError `json:"error,omitempty"`
}

type clData struct {
	TransactionToken   string            `json:"transaction_token,omitempty"`
	AmountCents        int64             `json:"amount_cents,omitempty"`
	ActionID           string            `json:"action_id,omitempty"`
	CustomerToken      string            `json:"customer_token,omitempty"`
	PaymentSourceToken string            `json:"payment_source_token,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`
}

type clError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// clCallback is what we POST to Commerce Layer's webhook endpoint when an
// operation answered 202 settles.
type clCallback struct {
	Success bool           `json:"success"`
	Data    clCallbackData `json:"data"`
}

type clCallbackData struct {
	ActionID    string `json:"action_id"`
	ErrorCode   string `json:"error_code,omitempty"`
	ErrorDetail string `json:"error_detail,omitempty"`
	Message     string `json:"message"`
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("handlers: cannot encode " + err.Error()) // only our own plain structs get here
	}
	return b
}

func clRefusal(status int, code, msg string, data *clData) payment.Answer {
	return payment.Answer{Status: status, Body: encode(clResponse{Data: data, Error: &clError{Code: code, Message: msg}})}
}

// clStatus maps the engine's refusals to HTTP statuses.
var clStatus = map[payment.ErrorKind]int{
	payment.KindInvalidRequest: http.StatusBadRequest,
	payment.KindInvalidAmount:  http.StatusBadRequest,
	payment.KindNotFound:       http.StatusNotFound,
	payment.KindInvalidState:   http.StatusConflict,
	payment.KindExceedsBalance: http.StatusUnprocessableEntity,
	payment.KindDeclined:       http.StatusUnprocessableEntity,
	payment.KindUnavailable:    http.StatusBadGateway,
}

// renderCommerceLayer answers a payment operation: 200 when done, 202 with
// an action_id while the PSP works on it, an error otherwise.
func renderCommerceLayer(v payment.Verdict, call *clCall) payment.Answer {
	data := &clData{AmountCents: call.amount}
	if v.Tx != nil {
		data.TransactionToken = v.Tx.Token
		data.AmountCents = v.Tx.Amount
	}
	if v.Err != nil {
		if data.TransactionToken == "" && data.AmountCents == 0 {
			data = nil
		}
		return clRefusal(clStatus[v.Err.Kind], v.Err.Code, v.Err.Message, data)
	}
	data.Metadata = clMetadata(v.Payment, v.Tx)
	if v.Tx.State == payment.Succeeded {
		return payment.Answer{Status: http.StatusOK, Body: encode(clResponse{Success: true, Data: data})}
	}
	data.ActionID = v.Tx.ActionID
	return payment.Answer{Status: http.StatusAccepted, Body: encode(clResponse{Success: true, Data: data})}
}

// clMetadata is copied by Commerce Layer into its transaction: ids an
// operator needs to find the payment here and at the PSP.
func clMetadata(p *payment.Payment, t *payment.Transaction) map[string]string {
	m := map[string]string{"payment_id": p.ID}
	if t.PSPRef != "" {
		m["gateway_reference"] = t.PSPRef
	}
	return m
}

func renderCommerceLayerVault(res payment.VaultResult, err *payment.Error) payment.Answer {
	if err != nil {
		return clRefusal(clStatus[err.Kind], err.Code, err.Message, nil)
	}
	return payment.Answer{Status: http.StatusOK, Body: encode(clResponse{Success: true, Data: &clData{
		CustomerToken: res.CustomerToken, PaymentSourceToken: res.SourceToken,
	}})}
}

var clSettledMessages = map[payment.Kind][2]string{
	payment.Authorize: {"Payment authorized", "Payment refused"},
	payment.Capture:   {"Payment captured", "Capture failed"},
	payment.Void:      {"Authorization voided", "Void failed"},
	payment.Refund:    {"Payment refunded", "Refund failed"},
}

// CommerceLayerCallback renders the callback for t, which Commerce Layer
// was answered 202 for, now that it has settled.
func CommerceLayerCallback(p *payment.Payment, t *payment.Transaction) []byte {
	msgs := clSettledMessages[t.Kind]
	if t.State == payment.Succeeded {
		return encode(clCallback{Success: true, Data: clCallbackData{ActionID: t.ActionID, Message: msgs[0]}})
	}
	return encode(clCallback{Data: clCallbackData{ActionID: t.ActionID, ErrorCode: t.Code, ErrorDetail: t.Message, Message: msgs[1]}})
}
