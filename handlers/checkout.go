package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// The sandbox's test checkout: the page a customer pays a checkout session
// on (Openfront's checkoutUrl), as a PSP's hosted payment page would be. A
// person picks a test token and confirms; confirming authorizes the session
// and emits the sandbox's PSP event into this gateway's webhook handling.
// Plain HTML with a form: no JavaScript, no external assets.

// checkoutPath parses …/checkout/{payment_id} and …/checkout/{payment_id}/confirm.
func checkoutPath(p string) (id string, confirm, ok bool) {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	n := len(segs)
	switch {
	case n >= 3 && segs[n-3] == "checkout" && segs[n-1] == "confirm":
		return segs[n-2], true, segs[n-2] != ""
	case n >= 2 && segs[n-2] == "checkout":
		return segs[n-1], false, segs[n-1] != ""
	}
	return "", false, false
}

// checkoutChoices are the tokens the page offers; the JSON confirm takes
// any token of the sandbox's table.
var checkoutChoices = []struct{ Token, Label string }{
	{"tok_visa", "Approve"},
	{"tok_decline", "Decline (card_declined)"},
	{"tok_3ds", "3-D Secure (pending until the customer is authenticated, then approved)"},
	{"tok_async", "Asynchronous (pending, then approved)"},
}

// confirmAnswer is the JSON answer to a confirm; the HTML page is made
// from it, so a replayed confirm shows the same result.
type confirmAnswer struct {
	PaymentID string `json:"payment_id"`
	Status    string `json:"status"` // paybridge's payment status
	Outcome   string `json:"outcome"`
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
}

const (
	outcomeAuthorized = "authorized"
	outcomeDeclined   = "declined"
	outcomePending    = "pending"
	outcomeRefused    = "refused"
)

func (g *GatewayRoutes) serveCheckout(w http.ResponseWriter, r *http.Request, id string, confirm bool) {
	wantJSON := isJSON(r.Header.Get("Content-Type")) || strings.Contains(r.Header.Get("Accept"), "application/json")
	fail := func(status int, msg string) {
		if wantJSON {
			writeAnswer(w, payment.Answer{Status: status, Body: encode(map[string]string{"error": msg})})
			return
		}
		writePage(w, status, pageData{Title: "Payment page", Error: msg})
	}
	method := http.MethodGet
	if confirm {
		method = http.MethodPost
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		fail(http.StatusMethodNotAllowed, "use "+method)
		return
	}
	engine, err := g.Engine(r.Context())
	if err != nil {
		unavailableHeader(w)
		fail(http.StatusServiceUnavailable, unavailableMessage)
		return
	}
	p, err := engine.Payment(r.Context(), id)
	if errors.Is(err, payment.ErrNotFound) || (err == nil && (p.Gateway != g.Name || !p.IsSession())) {
		fail(http.StatusNotFound, "no payment has this id")
		return
	}
	if err != nil {
		fail(http.StatusInternalServerError, "the payment could not be read; try again")
		return
	}
	if !confirm {
		writePage(w, http.StatusOK, newPageData(p, nil, r.URL.Path))
		return
	}
	token, msg := confirmToken(r)
	if msg != "" {
		fail(http.StatusBadRequest, msg)
		return
	}
	sum := sha256.Sum256([]byte(token))
	// The same confirmation sent again gets its first answer, but once the
	// session's authorization has failed (a decline, also one that came
	// after "pending"), paying again with the same card is a new attempt:
	// the count of failed authorizations starts a new round of keys.
	failed := 0
	for _, t := range p.Txs {
		if t.Kind == payment.Authorize && t.State == payment.Failed {
			failed++
		}
	}
	ans, err := engine.Do(r.Context(), payment.Request{
		Kind: payment.Authorize, Platform: p.Platform, Handler: p.Handler, Gateway: g.Name,
		Key:       "checkout|" + g.Name + "|" + p.ID + "|" + strconv.Itoa(failed) + "|" + hex.EncodeToString(sum[:16]),
		PaymentID: p.ID, SourceToken: token,
		// A PSP that cannot be reached is retried in the background; the
		// customer sees "pending" and the platform hears the outcome.
		Policy: payment.Policy{Async: true},
	}, renderConfirm)
	if errors.Is(err, payment.ErrCallInProgress) {
		unavailableHeader(w)
		fail(http.StatusServiceUnavailable, inProgressMessage)
		return
	}
	if err != nil {
		fail(http.StatusInternalServerError, "the payment could not be recorded; nothing was done")
		return
	}
	g.emitCheckoutEvent(r.Context(), engine, p.ID)
	if wantJSON {
		writeAnswer(w, ans)
		return
	}
	var res confirmAnswer
	_ = json.Unmarshal(ans.Body, &res)
	if q, err := engine.Payment(r.Context(), p.ID); err == nil {
		p = q
	}
	writePage(w, ans.Status, newPageData(p, &res, r.URL.Path))
}

func renderConfirm(v payment.Verdict) payment.Answer {
	a := confirmAnswer{Outcome: outcomeAuthorized}
	status := http.StatusOK
	if v.Payment != nil {
		a.PaymentID, a.Status = v.Payment.ID, string(v.Payment.Status)
	}
	switch {
	case v.Err != nil && v.Err.Kind == payment.KindDeclined:
		a.Outcome, a.Code, a.Message = outcomeDeclined, v.Err.Code, v.Err.Message
		status = http.StatusPaymentRequired
	case v.Err != nil:
		a.Outcome, a.Code, a.Message = outcomeRefused, v.Err.Code, v.Err.Message
		status = http.StatusConflict
		if v.Err.Kind == payment.KindInvalidRequest || v.Err.Kind == payment.KindInvalidAmount {
			status = http.StatusBadRequest
		}
	case v.Tx != nil && v.Tx.State != payment.Succeeded:
		a.Outcome = outcomePending
		status = http.StatusAccepted
	}
	return payment.Answer{Status: status, Body: encode(a)}
}

// confirmToken reads the chosen token from a form or a JSON body.
func confirmToken(r *http.Request) (string, string) {
	body, err := readBody(r, 64<<10)
	if err != nil {
		_, _, msg := bodyProblem(err)
		return "", msg
	}
	var token string
	if isJSON(r.Header.Get("Content-Type")) {
		var in struct {
			Token string `json:"token"`
		}
		if json.Unmarshal(body, &in) != nil {
			return "", `expected {"token":"tok_…"}`
		}
		token = in.Token
	} else {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return "", "the form could not be read"
		}
		token = form.Get("token")
	}
	token = strings.TrimSpace(token)
	if token == "" || len(token) > 128 || strings.ContainsFunc(token, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return "", "choose a test token (tok_…): printable ASCII, at most 128 characters"
	}
	return token, ""
}

func isJSON(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json"
}

// emitCheckoutEvent is the sandbox telling its own webhook route that the
// customer acted, as a PSP would: a signed event, through the same
// verification and handling a real one gets.
func (g *GatewayRoutes) emitCheckoutEvent(ctx context.Context, engine *payment.Engine, id string) {
	if len(g.Secrets) == 0 {
		g.Logger.Warn("sandbox checkout: no webhook_secret, so no PSP event was emitted", zap.String("gateway", g.Name))
		return
	}
	p, err := engine.Payment(ctx, id)
	if err != nil {
		return
	}
	auth := p.Authorization()
	if auth == nil {
		return
	}
	typ := EventAuthorizePending
	switch {
	case auth.State == payment.Succeeded:
		typ = EventAuthorized
	case auth.State == payment.Failed:
		typ = EventAuthorizeFailed
	case auth.AuthRequired:
		typ = EventAuthRequired
	}
	now := time.Now()
	body, err := marshalJS(pspEvent{
		ID: "evt_" + randomHex(12), Type: typ, Created: now.Unix(),
		Data: pspEventData{Key: auth.PSPKey, PaymentID: p.ID, Amount: auth.Amount, Currency: p.Currency, Status: string(p.Status)},
	})
	if err != nil {
		return
	}
	if status, code, msg := g.handleEvent(ctx, signature.Sign(g.Secrets[:1], now, body), body); code != "" {
		g.Logger.Warn("sandbox checkout: its PSP event was not processed", zap.String("gateway", g.Name),
			zap.String("payment_id", p.ID), zap.Int("status", status), zap.String("code", code), zap.String("message", msg))
	}
}
