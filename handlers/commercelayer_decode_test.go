package handlers

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
)

func decodeDoc(t *testing.T, action string, doc obj) (*clCall, *payment.Error) {
	t.Helper()
	return decodeCommerceLayer(action, mustJSON(t, doc))
}

func TestDecodeCommerceLayerValid(t *testing.T) {
	for _, tc := range []struct {
		action string
		want   clCall // key checked by prefix
		prefix string
	}{
		{"authorize", clCall{sourceToken: secretSource, customerEmail: "ada@example.com", amount: 12900, currency: "EUR",
			purchase: payment.Purchase{OrderID: "ord_NxYz", OrderNumber: "12345"}}, "authorize|external_payments|ep_kAbCd|"},
		{"token", clCall{sourceToken: secretSource, customerEmail: "ada@example.com"}, "token|external_payments|ep_tOkEn|"},
		{"capture", clCall{token: secretAuthTok, amount: 12900, currency: "EUR"}, "capture|authorizations|auth_QwErT|"},
		{"void", clCall{token: secretAuthTok, currency: "EUR"}, "void|authorizations|auth_QwErT|"},
		{"refund", clCall{token: secretCapTok, amount: 12900, currency: "EUR"}, "refund|captures|cap_AsDfG|"},
	} {
		t.Run(tc.action, func(t *testing.T) {
			call, perr := decodeDoc(t, tc.action, clDocFor(tc.action))
			if perr != nil {
				t.Fatalf("refused: %v", perr)
			}
			if !strings.HasPrefix(call.key, tc.prefix) || len(call.key) != len(tc.prefix)+64 {
				t.Errorf("key %q, want %q and a SHA-256 in hex", call.key, tc.prefix)
			}
			got := *call
			got.key = ""
			if got != tc.want {
				t.Errorf("call\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeCommerceLayerWrongDataType(t *testing.T) {
	for _, action := range clActionNames {
		for _, typ := range []string{"external_payments", "authorizations", "captures", "voids", "refunds", "orders", ""} {
			if typ == clDataTypes[action] {
				continue
			}
			doc := clDocFor(action)
			data(doc)["type"] = typ
			call, perr := decodeDoc(t, action, doc)
			if perr == nil || call != nil {
				t.Errorf("%s with data.type %q: accepted", action, typ)
				continue
			}
			if perr.Kind != payment.KindInvalidRequest || perr.Code != payment.CodeInvalidRequest {
				t.Errorf("%s with data.type %q: %v", action, typ, perr)
			}
			if !strings.Contains(perr.Message, clDataTypes[action]) {
				t.Errorf("%s with data.type %q: message %q does not name the expected type", action, typ, perr.Message)
			}
		}
	}
}

func TestDecodeCommerceLayerMissingToken(t *testing.T) {
	for _, action := range clActionNames {
		field := "token"
		if action == "authorize" || action == "token" {
			field = "payment_source_token"
		}
		for name, change := range map[string]func(obj){
			"absent": func(a obj) { delete(a, field) },
			"empty":  func(a obj) { a[field] = "" },
			"null":   func(a obj) { a[field] = nil },
		} {
			doc := clDocFor(action)
			change(attrs(doc))
			call, perr := decodeDoc(t, action, doc)
			if perr == nil || call != nil {
				t.Errorf("%s with %s %s: accepted", action, field, name)
				continue
			}
			if perr.Code != payment.CodeInvalidRequest || !strings.Contains(perr.Message, field) {
				t.Errorf("%s with %s %s: %v", action, field, name, perr)
			}
		}
		// A token of the wrong JSON type is malformed.
		doc := clDocFor(action)
		attrs(doc)[field] = 42
		if _, perr := decodeDoc(t, action, doc); perr == nil || perr.Code != payment.CodeInvalidRequest {
			t.Errorf("%s with a numeric %s: %v", action, field, perr)
		}
	}
}

func TestDecodeCommerceLayerMissingOrder(t *testing.T) {
	noIncluded := func(d obj) { delete(d, "included") }
	noOrder := func(d obj) {
		d["included"] = []any{obj{"id": "mkt_1", "type": "markets", "attributes": obj{}}}
	}
	otherOrder := func(d obj) { // the relationship names an order that is not included
		data(d)["relationships"] = obj{"order": obj{"data": obj{"type": "orders", "id": "ord_other"}}}
	}
	for name, change := range map[string]func(obj){"no included": noIncluded, "no order": noOrder, "other order": otherOrder} {
		doc := clAuthorizeDoc()
		change(doc)
		if call, perr := decodeDoc(t, "authorize", doc); perr == nil || call != nil || perr.Code != payment.CodeInvalidRequest {
			t.Errorf("authorize, %s: %+v %v", name, call, perr)
		}
		// For token the order only adds the customer's e-mail.
		doc = clTokenDoc()
		change(doc)
		call, perr := decodeDoc(t, "token", doc)
		if perr != nil || call.sourceToken != secretSource || call.customerEmail != "" {
			t.Errorf("token, %s: %+v %v", name, call, perr)
		}
	}
	// Without a relationship, the first included order is the order.
	doc := clAuthorizeDoc()
	delete(data(doc), "relationships")
	if call, perr := decodeDoc(t, "authorize", doc); perr != nil || call.purchase.OrderID != "ord_NxYz" {
		t.Errorf("authorize without relationship: %+v %v", call, perr)
	}
	// Capture, void and refund do not need the order.
	for _, action := range []string{"capture", "void", "refund"} {
		doc := clDocFor(action)
		delete(doc, "included")
		delete(data(doc), "relationships")
		if _, perr := decodeDoc(t, action, doc); perr != nil {
			t.Errorf("%s without the order: %v", action, perr)
		}
	}
}

func TestDecodeCommerceLayerCurrency(t *testing.T) {
	setCurrency := func(action string, doc obj, v any) {
		if action == "authorize" {
			orderAttrs(doc)["currency_code"] = v
		} else {
			attrs(doc)["currency_code"] = v
		}
	}
	for _, action := range []string{"authorize", "capture", "void", "refund"} {
		doc := clDocFor(action)
		setCurrency(action, doc, "usd")
		call, perr := decodeDoc(t, action, doc)
		if perr != nil || call.currency != "USD" {
			t.Errorf("%s with currency usd: %+v %v", action, call, perr)
		}
		for _, bad := range []string{"EUX", "euro", "XYZ", "€"} {
			doc := clDocFor(action)
			setCurrency(action, doc, bad)
			call, perr := decodeDoc(t, action, doc)
			if perr == nil || call != nil || perr.Kind != payment.KindInvalidAmount || perr.Code != payment.CodeInvalidAmount {
				t.Errorf("%s with currency %q: %+v %v", action, bad, call, perr)
			}
		}
	}
	// authorize needs a currency; the others may leave it out.
	doc := clAuthorizeDoc()
	delete(orderAttrs(doc), "currency_code")
	if _, perr := decodeDoc(t, "authorize", doc); perr == nil || perr.Code != payment.CodeInvalidAmount {
		t.Errorf("authorize without currency: %v", perr)
	}
	for _, action := range []string{"capture", "void", "refund"} {
		doc := clDocFor(action)
		delete(attrs(doc), "currency_code")
		if call, perr := decodeDoc(t, action, doc); perr != nil || call.currency != "" {
			t.Errorf("%s without currency: %+v %v", action, call, perr)
		}
	}
}

func TestDecodeCommerceLayerBadAmounts(t *testing.T) {
	bad := map[string]any{
		"zero": 0, "negative": -100, "minus zero": json.Number("-0"), "decimal": 12.5, "decimal string": "12.5",
		"whole decimal": json.Number("1200.0"), "exponent": json.Number("1e3"), "too big": json.Number("9223372036854775808"),
		"null": nil, "missing": "(missing)",
	}
	for _, action := range []string{"authorize", "capture", "refund"} {
		for name, v := range bad {
			doc := clDocFor(action)
			target, field := attrs(doc), "amount_cents"
			if action == "authorize" {
				target, field = orderAttrs(doc), "total_amount_with_taxes_cents"
			}
			if v == "(missing)" {
				delete(target, field)
			} else {
				target[field] = v
			}
			call, perr := decodeDoc(t, action, doc)
			if perr == nil || call != nil || perr.Kind != payment.KindInvalidAmount || perr.Code != payment.CodeInvalidAmount {
				t.Errorf("%s with %s %s: %+v %v", action, field, name, call, perr)
			}
		}
	}
	// An amount of the wrong JSON type is malformed: refused either way.
	for _, action := range []string{"authorize", "capture", "refund"} {
		doc := clDocFor(action)
		attrs(doc)["amount_cents"] = true
		orderAttrs(doc)["total_amount_with_taxes_cents"] = obj{}
		if call, perr := decodeDoc(t, action, doc); perr == nil || call != nil {
			t.Errorf("%s with a non-numeric amount: %+v", action, call)
		}
	}
	// A void carries no amount to check.
	doc := clAuthorizationDoc()
	attrs(doc)["amount_cents"] = -5
	if _, perr := decodeDoc(t, "void", doc); perr != nil {
		t.Errorf("void: %v", perr)
	}
}

func TestDecodeCommerceLayerPartialAmounts(t *testing.T) {
	for _, tc := range []struct {
		action, partial string
		value           any
		want            int64
		wantErr         bool
	}{
		{"capture", "capture_amount_cents", 5000, 5000, false},
		{"capture", "capture_amount_cents", 0, 12900, false},
		{"capture", "capture_amount_cents", -1, 12900, false},
		{"capture", "capture_amount_cents", nil, 12900, false},
		{"capture", "capture_amount_cents", "12.5", 0, true},
		{"capture", "capture_amount_cents", 20000, 20000, false}, // over the amount: the engine checks the balance
		{"refund", "refund_amount_cents", 4000, 4000, false},
		{"refund", "refund_amount_cents", 0, 12900, false},
		{"refund", "refund_amount_cents", nil, 12900, false},
		{"refund", "refund_amount_cents", 1.5, 0, true},
		// Each action reads its own partial amount only.
		{"capture", "refund_amount_cents", 4000, 12900, false},
		{"refund", "capture_amount_cents", 4000, 12900, false},
	} {
		doc := clDocFor(tc.action)
		if tc.value == nil {
			delete(attrs(doc), tc.partial)
		} else {
			attrs(doc)[tc.partial] = tc.value
		}
		call, perr := decodeDoc(t, tc.action, doc)
		switch {
		case tc.wantErr:
			if perr == nil || perr.Code != payment.CodeInvalidAmount {
				t.Errorf("%s with %s %v: %+v %v, want invalid_amount", tc.action, tc.partial, tc.value, call, perr)
			}
		case perr != nil:
			t.Errorf("%s with %s %v: %v", tc.action, tc.partial, tc.value, perr)
		case call.amount != tc.want:
			t.Errorf("%s with %s %v: amount %d, want %d", tc.action, tc.partial, tc.value, call.amount, tc.want)
		}
	}
	// A positive partial amount wins even when amount_cents is unusable.
	doc := clAuthorizationDoc()
	attrs(doc)["capture_amount_cents"] = 700
	delete(attrs(doc), "amount_cents")
	if call, perr := decodeDoc(t, "capture", doc); perr != nil || call.amount != 700 {
		t.Errorf("capture with only capture_amount_cents: %+v %v", call, perr)
	}
}

func TestDecodeCommerceLayerMalformed(t *testing.T) {
	for _, action := range clActionNames {
		for name, body := range map[string]string{
			"empty":            ``,
			"not json":         `hello`,
			"array":            `[]`,
			"null":             `null`,
			"no data":          `{"included":[]}`,
			"data null":        `{"data":null}`,
			"data array":       `{"data":[]}`,
			"trailing":         string(mustJSON(t, clDocFor(action))) + `{}`,
			"no id":            `{"data":{"type":"` + clDataTypes[action] + `","attributes":{"token":"x","payment_source_token":"x"}}}`,
			"no attributes":    `{"data":{"id":"1","type":"` + clDataTypes[action] + `"}}`,
			"attributes null":  `{"data":{"id":"1","type":"` + clDataTypes[action] + `","attributes":null}}`,
			"attributes array": `{"data":{"id":"1","type":"` + clDataTypes[action] + `","attributes":[]}}`,
			"attributes str":   `{"data":{"id":"1","type":"` + clDataTypes[action] + `","attributes":"x"}}`,
		} {
			call, perr := decodeCommerceLayer(action, []byte(body))
			if perr == nil || call != nil || perr.Code != payment.CodeInvalidRequest || perr.Kind != payment.KindInvalidRequest {
				t.Errorf("%s, %s: %+v %v", action, name, call, perr)
			}
		}
	}
	// A malformed included order.
	doc := clAuthorizeDoc()
	for _, r := range doc["included"].([]any) {
		if r.(obj)["type"] == "orders" {
			r.(obj)["attributes"] = "broken"
		}
	}
	if _, perr := decodeDoc(t, "authorize", doc); perr == nil || perr.Code != payment.CodeInvalidRequest {
		t.Errorf("malformed order: %v", perr)
	}
}

func TestNaturalKey(t *testing.T) {
	key := func(action string, doc obj) string {
		t.Helper()
		call, perr := decodeDoc(t, action, doc)
		if perr != nil {
			t.Fatalf("%s: %v", action, perr)
		}
		return call.key
	}
	for _, action := range clActionNames {
		base := key(action, clDocFor(action))
		if again := key(action, clDocFor(action)); again != base {
			t.Errorf("%s: the same document has two keys", action)
		}

		doc := clDocFor(action)
		attrs(doc)["created_at"] = "2030-01-01T00:00:00.000Z"
		attrs(doc)["updated_at"] = "2030-01-01T00:00:01.000Z"
		if got := key(action, doc); got != base {
			t.Errorf("%s: timestamps changed the key", action)
		}
		doc = clDocFor(action)
		delete(attrs(doc), "created_at")
		delete(attrs(doc), "updated_at")
		if got := key(action, doc); got != base {
			t.Errorf("%s: leaving the timestamps out changed the key", action)
		}
		// The included order is not part of the call's identity.
		doc = clDocFor(action)
		orderAttrs(doc)["status"] = "approved"
		if got := key(action, doc); got != base {
			t.Errorf("%s: a change in included changed the key", action)
		}

		doc = clDocFor(action)
		data(doc)["id"] = "other"
		if got := key(action, doc); got == base {
			t.Errorf("%s: another resource id has the same key", action)
		}
		doc = clDocFor(action)
		attrs(doc)["metadata"] = obj{"n": 2}
		if got := key(action, doc); got == base {
			t.Errorf("%s: other attributes have the same key", action)
		}
	}
	// A second partial capture of one authorization differs in its balance.
	first := clAuthorizationDoc()
	attrs(first)["capture_amount_cents"] = 5000
	second := clAuthorizationDoc()
	attrs(second)["capture_amount_cents"] = 5000
	attrs(second)["capture_balance_cents"] = 5000
	if key("capture", first) == key("capture", second) {
		t.Error("capture_balance_cents does not change the key")
	}
	// capture and void of one authorization are different calls.
	if key("capture", clAuthorizationDoc()) == key("void", clAuthorizationDoc()) {
		t.Error("capture and void share a key")
	}
	if key("authorize", clAuthorizeDoc()) == key("token", clAuthorizeDoc()) {
		t.Error("authorize and token share a key")
	}
	// Attribute order and white space are not part of the key.
	a := `{"data":{"id":"auth_1","type":"authorizations","attributes":{"token":"t1","amount_cents":100,"currency_code":"EUR"}}}`
	b := "{ \"data\" : { \"type\":\"authorizations\", \"attributes\" : {\"currency_code\":\"EUR\",\n \"amount_cents\": 100, \"token\":\"t1\"}, \"id\":\"auth_1\" } }"
	ca, pa := decodeCommerceLayer("capture", []byte(a))
	cb, pb := decodeCommerceLayer("capture", []byte(b))
	if pa != nil || pb != nil || ca.key != cb.key {
		t.Errorf("equivalent documents: %v %v, keys %v %v", pa, pb, ca, cb)
	}
	// Numbers keep their literal: 100 and 100.0 are different calls, and a
	// big amount is not rounded into another one.
	c := strings.Replace(a, `"amount_cents":100`, `"amount_cents":9007199254740993`, 1)
	d := strings.Replace(a, `"amount_cents":100`, `"amount_cents":9007199254740992`, 1)
	cc, _ := decodeCommerceLayer("capture", []byte(c))
	cd, _ := decodeCommerceLayer("capture", []byte(d))
	if cc == nil || cd == nil || cc.key == cd.key || cc.amount != 9007199254740993 {
		t.Errorf("big amounts: %+v %+v", cc, cd)
	}
}

// Errors name the field at fault but never echo a value: a source token or
// transaction token is a credential.
func TestDecodeCommerceLayerErrorsNeverEchoTokens(t *testing.T) {
	secrets := []string{secretSource, secretAuthTok, secretCapTok}
	breakers := map[string]func(action string, d obj){
		"wrong type": func(_ string, d obj) { data(d)["type"] = secretSource },
		"no id":      func(_ string, d obj) { delete(data(d), "id") },
		"bad currency": func(_ string, d obj) {
			attrs(d)["currency_code"] = secretAuthTok
			orderAttrs(d)["currency_code"] = secretCapTok
		},
		"bad amount": func(_ string, d obj) {
			attrs(d)["amount_cents"] = "1.5"
			orderAttrs(d)["total_amount_with_taxes_cents"] = "1.5"
		},
		"bad partial":    func(_ string, d obj) { attrs(d)["capture_amount_cents"] = 0.5; attrs(d)["refund_amount_cents"] = 0.5 },
		"no order":       func(_ string, d obj) { delete(d, "included") },
		"bad order":      func(_ string, d obj) { orderAttrs(d)["number"] = obj{}; orderAttrs(d)["customer_email"] = 1 },
		"token number":   func(_ string, d obj) { attrs(d)["payment_source_token"] = 1; attrs(d)["token"] = 1 },
		"no token":       func(_ string, d obj) { delete(attrs(d), "payment_source_token"); delete(attrs(d), "token") },
		"attributes str": func(_ string, d obj) { data(d)["attributes"] = secretSource },
	}
	for _, action := range clActionNames {
		for name, brk := range breakers {
			doc := clDocFor(action)
			attrs(doc)["payment_source_token"] = secretSource
			attrs(doc)["token"] = secretAuthTok
			brk(action, doc)
			_, perr := decodeDoc(t, action, doc)
			if perr == nil {
				continue // not every breaker breaks every action
			}
			for _, s := range secrets {
				if strings.Contains(perr.Message, s) || strings.Contains(perr.Code, s) {
					t.Errorf("%s, %s: message %q echoes a token", action, name, perr.Message)
				}
			}
		}
	}
}

// contracts/commercelayer.md: "The authorize amount is the order's
// total_amount_with_taxes_cents when the external_payments resource carries
// no amount." When it does carry one, that amount is the one to authorize.
func TestDecodeCommerceLayerAuthorizeAmountFromExternalPayment(t *testing.T) {
	doc := clAuthorizeDoc()
	attrs(doc)["amount_cents"] = 5000
	call, perr := decodeDoc(t, "authorize", doc)
	if perr != nil {
		t.Fatal(perr)
	}
	if call.amount != 5000 {
		t.Errorf("authorize amount %d, want the external payment's amount_cents 5000 (the order total is 12900)", call.amount)
	}
}
