package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/paybridge/caddy-paybridge/payment"
)

// mibCommand is what a Magento transaction keeps (Transaction.Command) to
// answer its command: which command, and the payment struct as received.
type mibCommand struct {
	Command string          `json:"command"`
	Payment json.RawMessage `json:"payment"`
}

// mibNotifications names the notification of each command's outcome.
var mibNotifications = map[string][2]string{ // command: {success, failure}
	"validate":   {"notify_validated", "notify_validation_failed"},
	"revalidate": {"notify_revalidated", "notify_revalidation_failed"},
	"capture":    {"notify_captured", "notify_capture_failed"},
	"cancel":     {"notify_cancelled", "notify_cancellation_failed"},
	"refund":     {"notify_refunded", "notify_refund_failed"},
}

// mibGatewayResponse is paybridge's record of the PSP's answer, sent as the
// gateway_response string.
type mibGatewayResponse struct {
	Status    string `json:"status"`
	Reference string `json:"reference,omitempty"`
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
}

// MagentoNotification renders the notification answering t's command: a
// JSON-RPC request to OMS's delegate URL whose id is stable (derived from
// the transaction), so a retried delivery is recognisable as the same one.
// params.payment echoes the command's payment, its amount literal
// unchanged, with gateway_response and gateway_response_time filled in.
func MagentoNotification(p *payment.Payment, t *payment.Transaction) []byte {
	var cmd mibCommand
	if t.Command == nil || json.Unmarshal(t.Command, &cmd) != nil {
		return nil
	}
	names, ok := mibNotifications[cmd.Command]
	if !ok {
		return nil
	}
	name := names[1]
	if t.State == payment.Succeeded {
		name = names[0]
	}
	fields := map[string]json.RawMessage{}
	if json.Unmarshal(cmd.Payment, &fields) != nil {
		return nil
	}
	if t.Kind == payment.Revalidate && t.State == payment.Succeeded {
		var key string
		_ = json.Unmarshal(fields["gateway_key"], &key)
		if t.PSPRef != "" && t.PSPRef != key {
			fields["new_gateway_key"], _ = json.Marshal(t.PSPRef)
		}
	}
	resp, _ := json.Marshal(mibGatewayResponse{Status: string(t.State), Reference: t.PSPRef, Code: t.Code, Message: t.Message})
	fields["gateway_response"], _ = json.Marshal(string(resp))
	seconds := t.UpdatedAt.Sub(t.CreatedAt).Seconds()
	fields["gateway_response_time"] = json.RawMessage(strconv.FormatFloat(max(seconds, 0), 'f', 3, 64))
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      "paybridge-" + t.ID,
		"method":  mibMethodPrefix + name,
		"params":  map[string]any{"payment": fields},
	})
	if err != nil {
		return nil
	}
	return body
}

// CheckJSONRPC reports a JSON-RPC answer that carries an error as not
// delivered; an empty 2xx body counts as delivered.
func CheckJSONRPC(answer []byte) error {
	if len(bytes.TrimSpace(answer)) == 0 {
		return nil
	}
	var a struct {
		Error *rpcError `json:"error"`
	}
	if err := json.Unmarshal(answer, &a); err != nil {
		return errors.New("the answer is not JSON-RPC")
	}
	if a.Error != nil {
		return fmt.Errorf("JSON-RPC error %d: %s", a.Error.Code, truncateText(a.Error.Message, 200))
	}
	return nil
}
