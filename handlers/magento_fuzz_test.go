package handlers

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// FuzzDecodeMagento: the decoder never panics, refuses with a JSON-RPC
// code, and what it accepts is a known command on a named payment with an
// exact amount; the notification for it echoes the amount literal.
func FuzzDecodeMagento(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":"1","method":"magento.payments.payments_management.capture","params":{"payment":{"gateway":"g","gateway_account":"a","gateway_key":"tok_visa","amount":12.5,"currency":"EUR","operation_reference":"op"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"magento.payments.payments_management.refund","params":{"payment":{"gateway":"g","gateway_account":"a","gateway_key":"k","amount":3.00,"currency":"EUR","lines":[{"line_number":1,"item_name":"n","item_sku":"s","item_type":"t","quantity":1,"unit_price_gross":3,"refund_amount":3.00}]}}}`,
		`{"jsonrpc":"2.0","id":"3","method":"magento.payments.payments_management.cancel","params":{"payment":{"gateway":"g","gateway_account":"a","gateway_key":"k","amount":0,"currency":"JPY","method_details":{"method":"card"}}}}`,
		`{"jsonrpc":"2.0","id":null,"method":"x","params":{}}`, `[]`, `{"jsonrpc":"2.0"`, ``,
	} {
		f.Add([]byte(s))
	}
	codes := map[int]bool{rpcParseError: true, rpcInvalidRequest: true, rpcMethodNotFound: true, rpcInvalidParams: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		call, _, rerr := decodeMagento(body)
		if rerr != nil {
			if !codes[rerr.Code] || rerr.Message == "" {
				t.Fatalf("refusal %+v", rerr)
			}
			return
		}
		if _, ok := mibCommands[call.command]; !ok || call.payment.GatewayKey == "" || call.amount < 0 {
			t.Fatalf("accepted %+v", call)
		}
		cmd, _ := json.Marshal(mibCommand{Command: call.command, Payment: call.raw})
		now := time.Now()
		n := MagentoNotification(&payment.Payment{ID: "pay_1"}, &payment.Transaction{ID: "tx_1", State: payment.Succeeded, Command: cmd, CreatedAt: now, UpdatedAt: now})
		if n == nil {
			t.Fatalf("no notification for %s", body)
		}
		if !bytes.Contains(n, append([]byte(`"amount":`), bytes.TrimSpace(call.payment.Amount)...)) {
			t.Fatalf("the amount literal %s is not echoed: %s", call.payment.Amount, n)
		}
	})
}

func TestDecodeMagentoNamesAreCaseSensitive(t *testing.T) {
	for body, want := range map[string]int{
		`{"jsonrpc":"2.0","id":"1","method":"magento.payments.payments_management.capture","params":{"payment":{"gateway":"g","gateway_account":"a","gateway_key":"k","Amount":1,"amount":1,"currency":"EUR"}}}`:                  rpcInvalidParams,
		`{"jsonrpc":"2.0","ID":"1","method":"magento.payments.payments_management.capture","params":{}}`:                                                                                                                          rpcInvalidRequest,
		`{"jsonrpc":"2.0","id":"1","method":"magento.payments.payments_management.capture","params":{"payment":{"gateway":"g","gateway_account":"a","gateway_key":"k","amount":1,"currency":"EUR","lines":[{"Line_Number":1}]}}}`: rpcInvalidParams,
	} {
		if _, _, rerr := decodeMagento([]byte(body)); rerr == nil || rerr.Code != want {
			t.Errorf("%s: %+v, want code %d", body, rerr, want)
		}
	}
}

// A command followed by anything but white space is not JSON: parse error.
func TestDecodeMagentoRefusesTrailingData(t *testing.T) {
	const cmd = `{"jsonrpc":"2.0","id":"1","method":"magento.payments.payments_management.capture","params":{"payment":{"gateway":"g","gateway_account":"a","gateway_key":"k","amount":1,"currency":"EUR"}}}`
	for _, tail := range []string{"}", "]", " {}", "x"} {
		if _, _, rerr := decodeMagento([]byte(cmd + tail)); rerr == nil || rerr.Code != rpcParseError {
			t.Errorf("command + %q: %+v, want a parse error", tail, rerr)
		}
	}
	if _, _, rerr := decodeMagento([]byte(cmd + "\n")); rerr != nil {
		t.Errorf("a trailing newline refused: %+v", rerr)
	}
}
