package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ofRequest is every body Openfront sends, in both shapes: the documented
// one and the one its code really sends (contracts/openfront.md).
type ofRequest struct {
	Provider struct {
		ID          string          `json:"id"`
		Code        string          `json:"code"`
		Credentials json.RawMessage `json:"credentials"`
	} `json:"provider"`
	Cart      *ofCart         `json:"cart"`
	Amount    json.RawMessage `json:"amount"`
	Currency  string          `json:"currency"`
	PaymentID string          `json:"paymentId"`
	Reason    string          `json:"reason"`
	// IdempotencyKey is ours, not Openfront's: a caller that sends it makes
	// a refund safe to repeat.
	IdempotencyKey string          `json:"idempotencyKey"`
	Event          json.RawMessage `json:"event"`
	Headers        json.RawMessage `json:"headers"`
}

// ofCart is a checkout cart (documented: total, currency; real: rawTotal,
// region.currency.code) or an invoice (totalAmount, currency.code).
type ofCart struct {
	ID          string          `json:"id"`
	Total       json.RawMessage `json:"total"`
	RawTotal    json.RawMessage `json:"rawTotal"`
	TotalAmount json.RawMessage `json:"totalAmount"`
	// Currency is a code in the documented cart, {code} in an invoice.
	Currency json.RawMessage `json:"currency"`
	Region   *struct {
		Currency *struct {
			Code string `json:"code"`
		} `json:"currency"`
	} `json:"region"`
	PaymentCollection *struct {
		ID string `json:"id"`
	} `json:"paymentCollection"`
}

// ofProblem is a request Openfront (or a person with curl) got wrong.
type ofProblem struct{ msg string }

func (p *ofProblem) Error() string { return p.msg }

func problemf(format string, args ...any) *ofProblem {
	return &ofProblem{msg: fmt.Sprintf(format, args...)}
}

func decodeOpenfront(body []byte) (*ofRequest, *ofProblem) {
	var req ofRequest
	if err := unmarshalNumbers(body, &req); err != nil {
		if errors.Is(err, errTrailingData) {
			return nil, problemf("the body holds more than one JSON value")
		}
		return nil, problemf("the body is not a JSON object of the expected shape")
	}
	return &req, nil
}

// apiKey returns provider.credentials.apiKey. Keystone stores credentials
// as JSON; a string holding JSON is accepted too.
func (r *ofRequest) apiKey() string {
	raw := r.Provider.Credentials
	var s string
	if json.Unmarshal(raw, &s) == nil {
		raw = json.RawMessage(s)
	}
	var creds struct {
		APIKey string `json:"apiKey"`
	}
	if json.Unmarshal(raw, &creds) != nil {
		return ""
	}
	return creds.APIKey
}

// minorUnits parses an integer amount of minor units. JSON numbers that
// are not integers (12.5, 1e3) are refused rather than rounded.
func minorUnits(raw json.RawMessage, field string) (int64, bool, *ofProblem) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, true, problemf("%s must be a whole number of minor units (cents), not %s", field, truncateText(s, 32))
	}
	if n <= 0 {
		return 0, true, problemf("%s must be positive", field)
	}
	return n, true, nil
}

// requiredAmount parses the amount of a capture or refund, which must be given.
func requiredAmount(raw json.RawMessage) (int64, *ofProblem) {
	amount, ok, p := minorUnits(raw, "amount")
	if p == nil && !ok {
		p = problemf("amount is required (an integer number of minor units)")
	}
	return amount, p
}

// money returns the amount and currency a create-payment call asks for:
// the top-level fields Openfront sends, else the cart's own.
func (r *ofRequest) money() (int64, string, *ofProblem) {
	amount, ok, p := minorUnits(r.Amount, "amount")
	if p != nil {
		return 0, "", p
	}
	if !ok && r.Cart != nil {
		for _, f := range []struct {
			raw  json.RawMessage
			name string
		}{{r.Cart.RawTotal, "cart.rawTotal"}, {r.Cart.Total, "cart.total"}, {r.Cart.TotalAmount, "cart.totalAmount"}} {
			if amount, ok, p = minorUnits(f.raw, f.name); p != nil {
				return 0, "", p
			} else if ok {
				break
			}
		}
	}
	if !ok {
		return 0, "", problemf("amount is required (an integer number of minor units)")
	}
	currency := r.Currency
	if currency == "" && r.Cart != nil {
		currency = r.Cart.currency()
	}
	if currency == "" {
		return 0, "", problemf("currency is required")
	}
	return amount, strings.ToUpper(strings.TrimSpace(currency)), nil
}

func (c *ofCart) currency() string {
	var code string
	if json.Unmarshal(c.Currency, &code) == nil && code != "" {
		return code
	}
	var obj struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(c.Currency, &obj) == nil && obj.Code != "" {
		return obj.Code
	}
	if c.Region != nil && c.Region.Currency != nil {
		return c.Region.Currency.Code
	}
	return ""
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
