package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/paybridge/caddy-paybridge/payment"
)

// clCall is a decoded Commerce Layer request.
type clCall struct {
	key           string // natural idempotency key, before the handler's name
	token         string // capture, void, refund: the transaction token we issued
	sourceToken   string // authorize, token: the payment source token
	customerEmail string
	amount        int64
	currency      string
	purchase      payment.Purchase
}

type jsonAPIDocument struct {
	Data     *jsonAPIResource  `json:"data"`
	Included []jsonAPIResource `json:"included"`
}

type jsonAPIResource struct {
	ID            string                         `json:"id"`
	Type          string                         `json:"type"`
	Attributes    json.RawMessage                `json:"attributes"`
	Relationships map[string]jsonAPIRelationship `json:"relationships"`
}

type jsonAPIRelationship struct {
	Data json.RawMessage `json:"data"`
}

type clAttributes struct {
	PaymentSourceToken string       `json:"payment_source_token"`
	Token              string       `json:"token"`
	CurrencyCode       string       `json:"currency_code"`
	AmountCents        *json.Number `json:"amount_cents"`
	CaptureAmountCents *json.Number `json:"capture_amount_cents"`
	RefundAmountCents  *json.Number `json:"refund_amount_cents"`
}

type clOrderAttributes struct {
	Number                    json.RawMessage `json:"number"`
	CurrencyCode              string          `json:"currency_code"`
	CustomerEmail             string          `json:"customer_email"`
	TotalAmountWithTaxesCents *json.Number    `json:"total_amount_with_taxes_cents"`
}

// clDataTypes is the JSON:API type each action's data must have.
var clDataTypes = map[string]string{
	"authorize": "external_payments",
	"capture":   "authorizations",
	"void":      "authorizations",
	"refund":    "captures",
	"token":     "external_payments",
}

// timestampAttributes change between deliveries of one call, so they are
// left out of its natural key.
var timestampAttributes = []string{"created_at", "updated_at"}

func invalid(msg string) *payment.Error {
	return &payment.Error{Kind: payment.KindInvalidRequest, Code: payment.CodeInvalidRequest, Message: msg}
}

func errOrderAttributes() *payment.Error {
	return invalid("the included order's attributes are malformed")
}

func invalidAmount(msg string) *payment.Error {
	return &payment.Error{Kind: payment.KindInvalidAmount, Code: payment.CodeInvalidAmount, Message: msg}
}

// clDoc is what decoding needs from a Commerce Layer document: the data
// resource, its attributes both as fields and as the digest of their
// canonical form, and the order the request is for.
type clDoc struct {
	dataID, dataType string
	attrs            clAttributes
	attrsOK          bool   // present, and decoded into attrs
	attrsDigest      string // hex SHA-256 of the canonical attributes; "" if they are not an object
	order            *clOrderAttributes
	orderID          string
	orderErr         *payment.Error // why there is no order
}

// decodeCommerceLayer decodes a request for action. Errors name the field at
// fault but never echo its value (it may be a token).
//
// Most documents go through scanCommerceLayer, a single pass; any document
// it is not certain about is parsed with encoding/json instead, which is
// the reference for what a document means (FuzzCommerceLayerScan holds
// them to the same results).
func decodeCommerceLayer(action string, body []byte) (*clCall, *payment.Error) {
	doc, ok := scanCommerceLayer(body)
	if !ok {
		var perr *payment.Error
		if doc, perr = parseCommerceLayer(body); perr != nil {
			return nil, perr
		}
	}
	return doc.call(action)
}

// parseCommerceLayer reads a document with encoding/json.
func parseCommerceLayer(body []byte) (*clDoc, *payment.Error) {
	var doc jsonAPIDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, invalid("the body is not a JSON:API document")
	}
	if doc.Data == nil {
		return nil, invalid("data is missing")
	}
	d := &clDoc{dataID: doc.Data.ID, dataType: doc.Data.Type}
	d.attrsOK = len(doc.Data.Attributes) > 0 && json.Unmarshal(doc.Data.Attributes, &d.attrs) == nil
	if d.attrsOK {
		d.attrsDigest, _ = attributesDigest(doc.Data.Attributes)
	}
	d.order, d.orderID, d.orderErr = includedOrder(&doc)
	return d, nil
}

func (d *clDoc) call(action string) (*clCall, *payment.Error) {
	want := clDataTypes[action]
	if d.dataType != want {
		return nil, invalid("data.type must be " + want + " for " + action)
	}
	if d.dataID == "" {
		return nil, invalid("data.id is missing")
	}
	if !d.attrsOK {
		return nil, invalid("data.attributes is missing or malformed")
	}
	if d.attrsDigest == "" {
		return nil, invalid("data.attributes is not a JSON object")
	}
	// The natural key identifies a call across deliveries: action, resource
	// type and id, and a digest of the attributes without timestamps (a
	// second partial capture of one authorization differs in its balances).
	call := &clCall{key: action + "|" + d.dataType + "|" + d.dataID + "|" + d.attrsDigest}
	attrs := &d.attrs

	switch action {
	case "authorize", "token":
		if attrs.PaymentSourceToken == "" {
			return nil, invalid("data.attributes.payment_source_token is missing")
		}
		call.sourceToken = attrs.PaymentSourceToken
		order, id, perr := d.order, d.orderID, d.orderErr
		if perr != nil {
			if action == "token" {
				return call, nil // the order only adds the customer's email
			}
			return nil, perr
		}
		call.customerEmail = order.CustomerEmail
		if action == "token" {
			return call, nil
		}
		call.purchase = payment.Purchase{OrderID: id, OrderNumber: scalarString(order.Number)}
		currency, ok := payment.NormalizeCurrency(order.CurrencyCode)
		if !ok {
			return nil, invalidAmount("the order's currency_code is missing or not an ISO 4217 code")
		}
		// The order's total, unless the external payment carries an amount
		// of its own (a split payment).
		amount, perr := optionalCents(attrs.AmountCents)
		if perr != nil {
			return nil, perr
		}
		if amount < 0 {
			return nil, invalidAmount("data.attributes.amount_cents must not be negative")
		}
		if amount == 0 {
			if amount, perr = cents(order.TotalAmountWithTaxesCents, "the order's total_amount_with_taxes_cents"); perr != nil {
				return nil, perr
			}
		}
		call.currency, call.amount = currency, amount
	case "capture", "void", "refund":
		if attrs.Token == "" {
			return nil, invalid("data.attributes.token is missing")
		}
		call.token = attrs.Token
		if attrs.CurrencyCode != "" {
			currency, ok := payment.NormalizeCurrency(attrs.CurrencyCode)
			if !ok {
				return nil, invalidAmount("data.attributes.currency_code is not an ISO 4217 code")
			}
			call.currency = currency
		}
		if action == "void" {
			return call, nil
		}
		partial := attrs.CaptureAmountCents
		if action == "refund" {
			partial = attrs.RefundAmountCents
		}
		if n, err := optionalCents(partial); err != nil {
			return nil, err
		} else if n > 0 {
			call.amount = n
			return call, nil
		}
		amount, perr := cents(attrs.AmountCents, "data.attributes.amount_cents")
		if perr != nil {
			return nil, perr
		}
		call.amount = amount
	}
	return call, nil
}

// includedOrder finds the order: the one data's relationship names, else
// the first included order.
func includedOrder(doc *jsonAPIDocument) (*clOrderAttributes, string, *payment.Error) {
	var want string
	if rel, ok := doc.Data.Relationships["order"]; ok && len(rel.Data) > 0 {
		var ref struct{ ID, Type string }
		if json.Unmarshal(rel.Data, &ref) == nil {
			want = ref.ID
		}
	}
	for i := range doc.Included {
		r := &doc.Included[i]
		if r.Type != "orders" || (want != "" && r.ID != want) {
			continue
		}
		var o clOrderAttributes
		if json.Unmarshal(r.Attributes, &o) != nil {
			return nil, "", errOrderAttributes()
		}
		return &o, r.ID, nil
	}
	return nil, "", invalid("the order is not in included")
}

// cents parses a required positive integer amount.
func cents(n *json.Number, what string) (int64, *payment.Error) {
	if n == nil {
		return 0, invalidAmount(what + " is missing")
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return 0, invalidAmount(what + " must be an integer number of cents")
	}
	if v <= 0 {
		return 0, invalidAmount(what + " must be positive")
	}
	return v, nil
}

// optionalCents parses a partial amount; absent, zero or negative mean "the
// whole amount", as Commerce Layer sends 0 when no partial amount was given.
func optionalCents(n *json.Number) (int64, *payment.Error) {
	if n == nil {
		return 0, nil
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return 0, invalidAmount("a partial amount must be an integer number of cents")
	}
	return v, nil
}

// attributesDigest is the hex SHA-256 of the attributes, timestamps left
// out (they change between deliveries of one call), as json.Marshal writes
// them once decoded into a map: keys sorted, numbers as sent.
func attributesDigest(raw json.RawMessage) (string, error) {
	var attrs map[string]any
	if err := unmarshalNumbers(raw, &attrs); err != nil || attrs == nil {
		return "", errNotObject
	}
	for _, k := range timestampAttributes {
		delete(attrs, k)
	}
	canonical, err := json.Marshal(attrs) // map keys come out sorted
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

type jsonError string

func (e jsonError) Error() string { return string(e) }

const errNotObject = jsonError("not a JSON object")

// unmarshalNumbers decodes keeping numbers as their literal text: amounts
// never pass through float64. Only a decode into interface values needs it;
// into the structs above, json.Unmarshal already keeps amounts as the text
// of their json.Number fields, and costs a third less.
//
// data must hold exactly one JSON value. Decoder.More is no test of that:
// it looks for the start of another value, and says false before a stray
// "}" or "]".
func unmarshalNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if len(bytes.TrimSpace(data[dec.InputOffset():])) > 0 {
		return errTrailingData
	}
	return nil
}

const errTrailingData = jsonError("trailing data after the JSON value")

// scalarString renders a JSON string or number as text ("" otherwise).
func scalarString(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return ""
	}
	if sc := (scanner{b: raw}); sc.peek() == '"' {
		if v, ok := sc.plainString(); ok && sc.i == len(raw) {
			return string(v) // what json.Unmarshal gives, without its passes
		}
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		return str
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return s
	}
	return ""
}
