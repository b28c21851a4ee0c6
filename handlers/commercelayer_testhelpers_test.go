package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// Commerce Layer request documents as its docs show them, built as maps so
// that each test case can change one thing.

type obj = map[string]any

// Token values that must never appear in an error message.
const (
	secretSource  = "tok_secret_src_4242"
	secretAuthTok = "pbt_secret_auth_0001"
	secretCapTok  = "pbt_secret_cap_0002"
)

var clActionNames = []string{"authorize", "capture", "void", "refund", "token"}

func clIncludedOrder() obj {
	return obj{
		"id":   "ord_NxYz",
		"type": "orders",
		"attributes": obj{
			"number":                        12345,
			"token":                         "order-token-abc",
			"status":                        "placed",
			"payment_status":                "unpaid",
			"customer_email":                "ada@example.com",
			"currency_code":                 "EUR",
			"total_amount_cents":            12000,
			"total_amount_with_taxes_cents": 12900,
		},
	}
}

func clIncluded() []any {
	return []any{
		obj{"id": "mkt_1", "type": "markets", "attributes": obj{"name": "Europe"}},
		clIncludedOrder(),
		obj{"id": "li_1", "type": "line_items", "attributes": obj{"quantity": 1, "total_amount_cents": 12900}},
	}
}

func clOrderRelationship() obj {
	return obj{"order": obj{"data": obj{"type": "orders", "id": "ord_NxYz"}}}
}

func clAuthorizeDoc() obj {
	return obj{
		"data": obj{
			"id":   "ep_kAbCd",
			"type": "external_payments",
			"attributes": obj{
				"payment_source_token": secretSource,
				"options":              obj{},
				"metadata":             obj{"foo": "bar"},
				"created_at":           "2025-03-01T12:00:00.000Z",
				"updated_at":           "2025-03-01T12:00:00.000Z",
			},
			"relationships": clOrderRelationship(),
		},
		"included": clIncluded(),
	}
}

func clTokenDoc() obj {
	d := clAuthorizeDoc()
	d["data"].(obj)["id"] = "ep_tOkEn"
	return d
}

func clAuthorizationDoc() obj {
	return obj{
		"data": obj{
			"id":   "auth_QwErT",
			"type": "authorizations",
			"attributes": obj{
				"number":                 "12345/T/001",
				"currency_code":          "EUR",
				"amount_cents":           12900,
				"amount_float":           129.0,
				"token":                  secretAuthTok,
				"gateway_transaction_id": "sbx_0123",
				"succeeded":              true,
				"message":                nil,
				"capture_amount_cents":   0,
				"capture_balance_cents":  0,
				"void_balance_cents":     12900,
				"created_at":             "2025-03-01T12:00:00.000Z",
				"updated_at":             "2025-03-01T12:00:05.000Z",
			},
			"relationships": clOrderRelationship(),
		},
		"included": clIncluded(),
	}
}

func clCaptureDoc() obj {
	return obj{
		"data": obj{
			"id":   "cap_AsDfG",
			"type": "captures",
			"attributes": obj{
				"number":               "12345/T/002",
				"currency_code":        "EUR",
				"amount_cents":         12900,
				"amount_float":         129.0,
				"token":                secretCapTok,
				"succeeded":            true,
				"refund_amount_cents":  0,
				"refund_balance_cents": 12900,
				"created_at":           "2025-03-01T12:01:00.000Z",
				"updated_at":           "2025-03-01T12:01:00.000Z",
			},
			"relationships": clOrderRelationship(),
		},
		"included": clIncluded(),
	}
}

// clDocFor returns a valid document for action.
func clDocFor(action string) obj {
	switch action {
	case "authorize":
		return clAuthorizeDoc()
	case "token":
		return clTokenDoc()
	case "capture", "void":
		return clAuthorizationDoc()
	case "refund":
		return clCaptureDoc()
	}
	panic("no document for " + action)
}

func data(d obj) obj  { return d["data"].(obj) }
func attrs(d obj) obj { return data(d)["attributes"].(obj) }

func orderAttrs(d obj) obj {
	for _, r := range d["included"].([]any) {
		if r.(obj)["type"] == "orders" {
			return r.(obj)["attributes"].(obj)
		}
	}
	panic("no order")
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Handler plumbing.

var (
	testSecret     = []byte("cl-shared-secret")
	testOldSecret  = []byte("cl-previous-secret")
	errNotStarted  = errors.New("engine not started (test)")
	notStartedFunc = func(context.Context) (*payment.Engine, error) { return nil, errNotStarted }
)

func testCommerceLayer() *CommerceLayer {
	return &CommerceLayer{
		Name:        "cl-test",
		Gateway:     "default",
		Secrets:     [][]byte{testSecret, testOldSecret},
		CallbackURL: "https://example.test/cl/webhook",
		MaxBodySize: 4096,
		Engine:      notStartedFunc,
	}
}

func signedRequest(method, action string, body []byte, secret []byte) *http.Request {
	r := httptest.NewRequest(method, "/commercelayer/"+action, strings.NewReader(string(body)))
	r.Header.Set("Content-Type", "application/json")
	if secret != nil {
		r.Header.Set(signature.CommerceLayerHeader, signature.CommerceLayer(secret, body))
	}
	return r
}

// clReply is any answer of the handler.
type clReply struct {
	Success bool `json:"success"`
	Data    *struct {
		TransactionToken   string            `json:"transaction_token"`
		AmountCents        int64             `json:"amount_cents"`
		ActionID           string            `json:"action_id"`
		CustomerToken      string            `json:"customer_token"`
		PaymentSourceToken string            `json:"payment_source_token"`
		Metadata           map[string]string `json:"metadata"`
	} `json:"data"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func serve(h *CommerceLayer, r *http.Request) (*httptest.ResponseRecorder, clReply) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var reply clReply
	_ = json.Unmarshal(w.Body.Bytes(), &reply)
	return w, reply
}
