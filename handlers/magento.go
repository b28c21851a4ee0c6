package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// PlatformMagento names Magento OMS in payments, events and the outbox.
const PlatformMagento = "magento"

// MIBSignatureHeader carries the bus's HMAC-SHA1 of the body.
const MIBSignatureHeader = "X-Signature"

// Magento serves Magento OMS's payment commands from the integration bus:
// one JSON-RPC 2.0 endpoint. Every command is accepted once it is durable
// and answered later by exactly one notification (Notify renders it),
// whatever the PSP or paybridge's rules decided.
type Magento struct {
	// Name identifies this handler; payments and notifications refer to it.
	Name    string
	Gateway string
	// Secrets verify X-Signature (the first is the one registered).
	Secrets     [][]byte
	MaxBodySize int64
	// Policy: the PSP is retried in the background until MaxAge; the call
	// waits for the PSP only up to Deadline.
	Policy payment.Policy
	Engine func(context.Context) (*payment.Engine, error)
	Logger *zap.Logger
}

type rpcAnswer struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  *struct{}       `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

func writeRPC(w http.ResponseWriter, status int, id json.RawMessage, e *rpcError) {
	writeAnswer(w, rpcReply(status, id, e))
}

func rpcReply(status int, id json.RawMessage, e *rpcError) payment.Answer {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	a := rpcAnswer{JSONRPC: "2.0", ID: id, Error: e}
	if e == nil {
		a.Result = &struct{}{}
	}
	return payment.Answer{Status: status, Body: encode(a)}
}

func (h *Magento) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodOptions:
		// The bus probes a registered URL this way.
		w.Header().Set("X-Magento-Service-Bus", "*")
		w.WriteHeader(http.StatusOK)
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		writeRPC(w, http.StatusMethodNotAllowed, nil, &rpcError{Code: rpcInvalidRequest, Message: "use POST"})
		return
	}
	body, err := readBody(r, h.maxBody())
	if err != nil {
		status, _, msg := bodyProblem(err)
		writeRPC(w, status, nil, &rpcError{Code: rpcInvalidRequest, Message: msg})
		return
	}
	if !signature.VerifyMIB(r.Header.Get(MIBSignatureHeader), body, h.Secrets) {
		writeRPC(w, http.StatusUnauthorized, nil, &rpcError{Code: rpcInvalidRequest, Message: "missing or wrong " + MIBSignatureHeader})
		return
	}
	call, id, rerr := decodeMagento(body)
	if rerr != nil {
		// JSON-RPC errors travel in a 200.
		writeRPC(w, http.StatusOK, id, rerr)
		return
	}
	engine, err := h.Engine(r.Context())
	if err != nil {
		h.ServeUnavailable(w)
		return
	}
	refused, err := h.accept(r.Context(), engine, call)
	if inProgress(w, err, func(msg string) payment.Answer {
		return rpcReply(http.StatusServiceUnavailable, id, &rpcError{Code: rpcInternalError, Message: msg})
	}) {
		return
	}
	if err != nil {
		h.Logger.Error("magento command not recorded", zap.String("handler", h.Name), zap.String("command", call.command), zap.Error(err))
		// Not durable, so not accepted: a 503 makes the bus send it again.
		writeRPC(w, http.StatusServiceUnavailable, id, &rpcError{Code: rpcInternalError, Message: "the command could not be recorded; send it again"})
		return
	}
	if refused != nil {
		field := "payment.operation_reference"
		if call.payment.OperationReference == "" {
			field = "id"
		}
		writeRPC(w, http.StatusOK, id, invalidParams(field, "%s (%s)", refused.Message, refused.Code))
		return
	}
	writeRPC(w, http.StatusOK, id, nil)
}

// accept records the command durably and starts it; its outcome goes out
// as a notification. A repeat of a command (same method, gateway key and
// operation reference, or the same JSON-RPC id without a reference) is
// recognised by its key and not carried out again. refused is a refusal
// that no notification will carry (the command never became a
// transaction: a key reused for another amount), so the call's own answer
// must.
func (h *Magento) accept(ctx context.Context, engine *payment.Engine, c *mibCall) (refused *payment.Error, err error) {
	p := &c.payment
	kind := mibCommands[c.command]
	// A validation's amount is the authorization's; any other command's
	// may be a part of it (a partial capture, a refund).
	var authorized int64
	if kind == payment.Validate || kind == payment.Revalidate {
		authorized = c.amount
	}
	paymentID, authToken, refusal, err := engine.AdoptAuthorization(ctx, payment.ExternalAuthorization{
		Platform: PlatformMagento, Handler: h.Name, Gateway: h.Gateway, GatewayKey: p.GatewayKey,
		Amount: authorized, Currency: p.Currency, Purchase: payment.Purchase{OrderID: p.OrderID},
	})
	if err != nil {
		return nil, err
	}
	if refusal != nil {
		// Checked by the decoder already; reaching here is a bug, and
		// the bus must not take silence for an answer.
		return nil, refusal
	}
	token := authToken
	if kind == payment.Refund {
		token = h.refundTarget(ctx, engine, paymentID, c.amount, authToken)
	}
	command, err := json.Marshal(mibCommand{Command: c.command, Payment: c.raw})
	if err != nil {
		return nil, err
	}
	_, err = engine.Do(ctx, payment.Request{
		Kind: kind, Platform: PlatformMagento, Handler: h.Name, Gateway: h.Gateway,
		Key: h.Name + "|" + c.key(), Token: token, Amount: c.amount, Currency: p.Currency,
		Policy: h.Policy, Command: command,
	}, func(v payment.Verdict) payment.Answer {
		if v.Err != nil && v.Tx == nil {
			refused = v.Err
		}
		return payment.Answer{Status: http.StatusOK}
	})
	return refused, err
}

// key is the command's natural idempotency key. Its parts are escaped, so
// a gateway key or reference holding "|" cannot make two commands' keys
// meet; parts without "|" or "\" (all real ones) are written as they are,
// so keys stored by earlier builds still match.
func (c *mibCall) key() string {
	gatewayKey := keyPart(c.payment.GatewayKey)
	if ref := c.payment.OperationReference; ref != "" {
		return c.command + "|" + gatewayKey + "|ref|" + keyPart(ref)
	}
	return c.command + "|" + gatewayKey + "|id|" + keyPart(string(c.id))
}

var keyPartEscaper = strings.NewReplacer(`\`, `\\`, "|", `\|`)

func keyPart(s string) string {
	if !strings.ContainsAny(s, `|\`) {
		return s
	}
	return keyPartEscaper.Replace(s)
}

// refundTarget picks the capture a refund is taken from; with none, the
// authorization, which the engine refuses (and the bus is notified).
func (h *Magento) refundTarget(ctx context.Context, engine *payment.Engine, paymentID string, amount int64, authToken string) string {
	p, err := engine.Payment(ctx, paymentID)
	if err != nil {
		return authToken
	}
	if t := refundTarget(p, amount); t != nil {
		return t.Token
	}
	return authToken
}

func (h *Magento) maxBody() int64 {
	if h.MaxBodySize > 0 {
		return h.MaxBodySize
	}
	return DefaultMaxBodySize
}
