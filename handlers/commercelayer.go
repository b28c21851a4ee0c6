package handlers

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// PlatformCommerceLayer names Commerce Layer in payments, events and the outbox.
const PlatformCommerceLayer = "commercelayer"

// DefaultMaxBodySize bounds a platform request's body.
const DefaultMaxBodySize = 1 << 20

// CommerceLayer serves Commerce Layer's external payment gateway contract:
// authorize, capture, void, refund and token, chosen by the last path segment.
type CommerceLayer struct {
	// Name identifies this handler (one per Commerce Layer organization);
	// payments and queued callbacks refer to it.
	Name    string
	Gateway string
	// Secrets: the first signs callbacks, every one verifies requests.
	Secrets     [][]byte
	CallbackURL string
	MaxBodySize int64
	Policy      payment.Policy
	// Engine returns the running engine (it exists only once the app has
	// started, which Caddy may do after this handler is provisioned).
	Engine func(context.Context) (*payment.Engine, error)
	Logger *zap.Logger
}

var clActions = map[string]payment.Kind{
	"authorize": payment.Authorize,
	"capture":   payment.Capture,
	"void":      payment.Void,
	"refund":    payment.Refund,
	"token":     "", // vaulting, not a payment operation
}

func (h *CommerceLayer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAnswer(w, clRefusal(http.StatusMethodNotAllowed, "method_not_allowed", "only POST is allowed", nil))
		return
	}
	action := path.Base(r.URL.Path)
	kind, ok := clActions[action]
	if !ok {
		writeAnswer(w, clRefusal(http.StatusNotFound, "not_found", "unknown action; use authorize, capture, void, refund or token", nil))
		return
	}
	body, err := readBody(r, h.maxBody())
	if err != nil {
		writeAnswer(w, bodyRefusal(err))
		return
	}
	if !signature.VerifyCommerceLayer(r.Header.Get(signature.CommerceLayerHeader), body, h.Secrets) {
		writeAnswer(w, clRefusal(http.StatusUnauthorized, "invalid_signature", "missing or wrong "+signature.CommerceLayerHeader, nil))
		return
	}
	call, perr := decodeCommerceLayer(action, body)
	if perr != nil {
		writeAnswer(w, clRefusal(http.StatusBadRequest, perr.Code, perr.Message, nil))
		return
	}
	engine, err := h.Engine(r.Context())
	if err != nil {
		h.ServeUnavailable(w)
		return
	}
	key := h.Name + "|" + call.key
	var ans payment.Answer
	if action == "token" {
		ans, err = engine.Vault(r.Context(), payment.VaultCall{
			Platform: PlatformCommerceLayer, Handler: h.Name, Gateway: h.Gateway, Key: key,
			SourceToken: call.sourceToken, CustomerEmail: call.customerEmail, Deadline: h.Policy.Deadline,
		}, renderCommerceLayerVault)
	} else {
		ans, err = engine.Do(r.Context(), payment.Request{
			Kind: kind, Platform: PlatformCommerceLayer, Handler: h.Name, Gateway: h.Gateway, Key: key,
			Token: call.token, SourceToken: call.sourceToken, Amount: call.amount, Currency: call.currency,
			Purchase: call.purchase, Policy: h.Policy,
		}, func(v payment.Verdict) payment.Answer { return renderCommerceLayer(v, call) })
	}
	if inProgress(w, err, func(msg string) payment.Answer {
		return clRefusal(http.StatusServiceUnavailable, "call_in_progress", msg, nil)
	}) {
		return
	}
	if err != nil {
		writeAnswer(w, clRefusal(http.StatusInternalServerError, "internal_error", "the payment could not be recorded; nothing was done", nil))
		return
	}
	writeAnswer(w, ans)
}

func (h *CommerceLayer) maxBody() int64 {
	if h.MaxBodySize > 0 {
		return h.MaxBodySize
	}
	return DefaultMaxBodySize
}

// CallbackDestination returns where and how a queued callback goes now:
// signed over the exact bytes sent, with the current first secret.
func (h *CommerceLayer) CallbackDestination(body []byte) (url string, header http.Header) {
	header = http.Header{}
	header.Set(signature.CommerceLayerHeader, signature.CommerceLayer(h.Secrets[0], body))
	return h.CallbackURL, header
}

var errBodyTooLarge = errors.New("body too large")

// readBody reads at most limit bytes of r's body.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, errBodyTooLarge
	}
	return body, nil
}

// bodyProblem classifies a failure of readBody.
func bodyProblem(err error) (status int, code, msg string) {
	if errors.Is(err, errBodyTooLarge) {
		return http.StatusRequestEntityTooLarge, "body_too_large", "the request body is over the size limit"
	}
	return http.StatusBadRequest, "invalid_request", "the request body could not be read"
}

func bodyRefusal(err error) payment.Answer {
	status, code, msg := bodyProblem(err)
	return clRefusal(status, code, msg, nil)
}

func writeAnswer(w http.ResponseWriter, a payment.Answer) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}
