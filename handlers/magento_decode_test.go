package handlers

import (
	"fmt"
	"strings"
	"testing"
)

func mibBody(command, amount, currency, extra string) []byte {
	return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":"1","method":"magento.payments.payments_management.%s","params":{"payment":{"gateway":"g","gateway_account":"a","gateway_key":"tok_visa_mib","amount":%s,"currency":%q%s}}}`,
		command, amount, currency, extra)
}

// A float serializer writes whole amounts with a fraction (PHP's json_encode
// writes 500.0): zeros past the currency's decimals are exact.
func TestMagentoAmountsWithTrailingZeros(t *testing.T) {
	for _, c := range []struct {
		amount, currency string
		want             int64
	}{{"500.0", "JPY", 500}, {"12.500", "EUR", 1250}, {"3.10", "USD", 310}} {
		call, _, rerr := decodeMagento(mibBody("capture", c.amount, c.currency, ""))
		if rerr != nil || call.amount != c.want {
			t.Errorf("%s %s: %+v, want %d minor units", c.amount, c.currency, rerr, c.want)
		}
	}
	if _, _, rerr := decodeMagento(mibBody("capture", "10.005", "EUR", "")); rerr == nil || rerr.Data != "payment.amount" {
		t.Errorf("10.005 EUR: %+v, want a refusal on payment.amount", rerr)
	}
}

// Lines whose refund amounts would add up past int64 must not wrap round
// to the payment's amount.
func TestMagentoRefundLinesCannotOverflow(t *testing.T) {
	line := `{"line_number":1,"item_name":"n","item_sku":"s","item_type":"t","quantity":1,"unit_price_gross":1,"refund_amount":%s}`
	big := fmt.Sprintf(line, "92233720368547758.07")
	lines := `,"lines":[` + strings.Join([]string{big, big, fmt.Sprintf(line, "1.02")}, ",") + `]`
	call, _, rerr := decodeMagento(mibBody("refund", "1.00", "EUR", lines))
	if rerr == nil || rerr.Data != "payment.lines" {
		t.Fatalf("refund of 1.00 EUR with lines refunding about 1.8e17 EUR: %+v, %+v; want a refusal on payment.lines", call, rerr)
	}
	ok := `,"lines":[` + fmt.Sprintf(line, "0.40") + "," + fmt.Sprintf(line, "0.60") + `]`
	if _, _, rerr := decodeMagento(mibBody("refund", "1.00", "EUR", ok)); rerr != nil {
		t.Fatalf("lines adding up to the amount: %+v", rerr)
	}
}
