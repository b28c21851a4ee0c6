package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/paybridge/caddy-paybridge/payment"
)

// JSON-RPC 2.0 error codes.
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcMethodNotFound = -32601
	rpcInvalidParams  = -32602
	rpcInternalError  = -32603
)

// rpcError is a JSON-RPC error; Data names the offending field.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    string `json:"data,omitempty"`
}

// mibEnvelope is a JSON-RPC request as the bus sends it.
type mibEnvelope struct {
	JSONRPC string                     `json:"jsonrpc"`
	ID      json.RawMessage            `json:"id"`
	Method  string                     `json:"method"`
	Params  map[string]json.RawMessage `json:"params"`
}

// mibPayment is the payment struct of magento.payments; only what paybridge
// checks or uses is decoded, and the raw struct is kept to echo back.
type mibPayment struct {
	Gateway            string          `json:"gateway"`
	GatewayAccount     string          `json:"gateway_account"`
	GatewayKey         string          `json:"gateway_key"`
	Amount             json.RawMessage `json:"amount"`
	Currency           string          `json:"currency"`
	OrderID            string          `json:"order_id"`
	OperationReference string          `json:"operation_reference"`
	Lines              []struct {
		LineNumber     *json.Number `json:"line_number"`
		ItemName       *string      `json:"item_name"`
		ItemSKU        *string      `json:"item_sku"`
		ItemType       *string      `json:"item_type"`
		Quantity       *json.Number `json:"quantity"`
		UnitPriceGross *json.Number `json:"unit_price_gross"`
		RefundAmount   *json.Number `json:"refund_amount"`
	} `json:"lines"`
	MethodDetails *struct {
		Method    *string `json:"method"`
		Submethod *string `json:"submethod"`
	} `json:"method_details"`
}

// mibCall is a decoded, checked command.
type mibCall struct {
	command string // validate, revalidate, capture, cancel, refund
	id      json.RawMessage
	raw     json.RawMessage // params.payment, echoed in the notification
	payment mibPayment
	amount  int64 // minor units
}

const mibMethodPrefix = "magento.payments.payments_management."

var mibCommands = map[string]payment.Kind{
	"validate":   payment.Validate,
	"revalidate": payment.Revalidate,
	"capture":    payment.Capture,
	"cancel":     payment.Void,
	"refund":     payment.Refund,
}

func invalidParams(field, format string, args ...any) *rpcError {
	return &rpcError{Code: rpcInvalidParams, Message: "invalid params: " + fmt.Sprintf(format, args...), Data: field}
}

// decodeMagento checks a JSON-RPC command. The id is returned whenever it
// could be read, so an error answer can carry it.
func decodeMagento(body []byte) (*mibCall, json.RawMessage, *rpcError) {
	var env mibEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		var probe any
		if json.Unmarshal(body, &probe) != nil {
			return nil, nil, &rpcError{Code: rpcParseError, Message: "parse error: the body is not JSON"}
		}
		return nil, nil, &rpcError{Code: rpcInvalidRequest, Message: "invalid request: expected a JSON-RPC 2.0 request object"}
	}
	id := env.ID
	if perr := caseSensitive(body, "request"); perr != nil {
		perr.Code, perr.Message = rpcInvalidRequest, "invalid request: "+strings.TrimPrefix(perr.Message, "invalid params: ")
		return nil, nil, perr
	}
	switch {
	case env.JSONRPC != "2.0":
		return nil, id, &rpcError{Code: rpcInvalidRequest, Message: `invalid request: jsonrpc must be "2.0"`}
	case len(id) == 0 || string(id) == "null" || (id[0] != '"' && (id[0] < '0' || id[0] > '9') && id[0] != '-'):
		return nil, nil, &rpcError{Code: rpcInvalidRequest, Message: "invalid request: id must be a string or a number (commands are answered)"}
	case env.Method == "":
		return nil, id, &rpcError{Code: rpcInvalidRequest, Message: "invalid request: method is required"}
	case env.Params == nil:
		return nil, id, &rpcError{Code: rpcInvalidRequest, Message: "invalid request: params must be an object"}
	}
	command, ok := strings.CutPrefix(env.Method, mibMethodPrefix)
	if _, known := mibCommands[command]; !ok || !known {
		return nil, id, &rpcError{Code: rpcMethodNotFound, Message: "method not found: " + truncateText(env.Method, 100), Data: env.Method}
	}
	raw, ok := env.Params["payment"]
	if !ok || len(raw) == 0 || raw[0] != '{' {
		return nil, id, invalidParams("payment", "params.payment must be an object")
	}
	call := &mibCall{command: command, id: id, raw: raw}
	if perr := caseSensitive(raw, "payment"); perr != nil {
		return nil, id, perr
	}
	pd := json.NewDecoder(bytes.NewReader(raw))
	pd.UseNumber()
	if err := pd.Decode(&call.payment); err != nil {
		return nil, id, invalidParams("payment", "params.payment has a field of the wrong type")
	}
	if perr := call.check(); perr != nil {
		return nil, id, perr
	}
	return call, id, nil
}

// mibFields are the payment struct's field names, by object path.
var mibFields = map[string][]string{
	"request": {"jsonrpc", "id", "method", "params", "client"},
	"payment": {"gateway", "gateway_account", "gateway_key", "amount", "currency", "order_id", "operation_reference",
		"new_gateway_key", "lines", "method_details", "gateway_command", "gateway_response", "gateway_response_time", "custom_attributes"},
	"payment.lines":          {"line_number", "item_name", "item_sku", "item_type", "quantity", "unit_price_gross", "refund_amount", "tax_amount", "tax_rate"},
	"payment.method_details": {"method", "submethod", "card", "bank"},
}

// caseSensitive refuses a field whose name differs from the struct's only
// in case: the bus's names are case-sensitive, and encoding/json would
// otherwise take "Amount" for "amount".
func caseSensitive(raw json.RawMessage, path string) *rpcError {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil // not an object: the typed decoding reports it
	}
	for k, v := range obj {
		for _, name := range mibFields[path] {
			if k != name && strings.EqualFold(k, name) {
				return invalidParams(path+"."+k, "%s.%s: field names are case-sensitive (%s)", path, k, name)
			}
		}
		sub := path + "." + k
		if _, nested := mibFields[sub]; nested {
			var list []json.RawMessage
			if json.Unmarshal(v, &list) == nil {
				for _, item := range list {
					if perr := caseSensitive(item, sub); perr != nil {
						return perr
					}
				}
			} else if perr := caseSensitive(v, sub); perr != nil {
				return perr
			}
		}
	}
	return nil
}

func (c *mibCall) check() *rpcError {
	p := &c.payment
	for _, f := range []struct{ name, v string }{
		{"gateway", p.Gateway}, {"gateway_account", p.GatewayAccount}, {"gateway_key", p.GatewayKey},
		{"amount", string(p.Amount)}, {"currency", p.Currency},
	} {
		if strings.TrimSpace(f.v) == "" {
			return invalidParams("payment."+f.name, "payment.%s is required", f.name)
		}
	}
	currency := strings.ToUpper(p.Currency)
	if _, known := payment.CurrencyExponent(currency); !known || currency != p.Currency {
		return invalidParams("payment.currency", "payment.currency must be an upper-case ISO 4217 code")
	}
	// The literal is parsed as decimal text; a JSON string is not a number.
	amount, err := payment.ParseDecimal(string(p.Amount), currency)
	if err != nil {
		return invalidParams("payment.amount", "payment.amount %s", err)
	}
	if amount < 0 || (amount == 0 && c.command != "validate" && c.command != "revalidate" && c.command != "cancel") {
		return invalidParams("payment.amount", "payment.amount must be positive")
	}
	c.amount = amount
	var refunds int64
	anyRefund := false
	for i, l := range p.Lines {
		field := fmt.Sprintf("payment.lines[%d]", i)
		for _, f := range []struct {
			name    string
			missing bool
		}{
			{"line_number", l.LineNumber == nil}, {"item_name", l.ItemName == nil}, {"item_sku", l.ItemSKU == nil},
			{"item_type", l.ItemType == nil}, {"quantity", l.Quantity == nil}, {"unit_price_gross", l.UnitPriceGross == nil},
		} {
			if f.missing {
				return invalidParams(field+"."+f.name, "%s.%s is required", field, f.name)
			}
		}
		if l.RefundAmount != nil {
			n, err := payment.ParseDecimal(l.RefundAmount.String(), currency)
			if err != nil || n < 0 {
				return invalidParams(field+".refund_amount", "%s.refund_amount must be a non-negative amount with at most the currency's decimals", field)
			}
			// Checked before adding, so the sum cannot wrap round to
			// the payment's amount.
			if c.command == "refund" && n > amount-refunds {
				return invalidParams("payment.lines", "the lines' refund_amount add up to more than the payment's amount %s", p.Amount)
			}
			refunds += n
			anyRefund = true
		}
	}
	if c.command == "refund" && anyRefund && refunds != amount {
		return invalidParams("payment.lines", "the lines' refund_amount add up to %s, not the payment's amount %s", payment.FormatDecimal(refunds, currency), p.Amount)
	}
	if md := p.MethodDetails; md != nil && (md.Method == nil || md.Submethod == nil) {
		return invalidParams("payment.method_details", "payment.method_details needs method and submethod")
	}
	return nil
}
