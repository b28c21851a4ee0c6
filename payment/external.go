package payment

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// External authorizations. Magento OMS never asks the gateway to authorize:
// the storefront did, and OMS's commands name the payment by the PSP's
// gateway key. The first command for a key makes paybridge adopt that
// authorization as a Payment whose authorize transaction succeeded without
// paybridge executing it; later commands act on it like on any other. Only
// a validation states the authorized amount; a first capture may be partial.
// So the platform passes Amount 0 (unknown) unless it knows it, and then
// the PSP, not paybridge, bounds the captures (see capturable). Refunds are
// still bounded by the captures paybridge made.

// ExternalAuthorization names an authorization made outside paybridge.
type ExternalAuthorization struct {
	Platform string
	Handler  string
	Gateway  string
	// GatewayKey is the PSP's reference of the authorization; it is also
	// the payment source the PSP is asked to act on.
	GatewayKey string
	// Amount is the authorized amount, or 0 if the platform does not know
	// it.
	Amount   int64
	Currency string
	Purchase Purchase
}

// externalKey is the index token of an adopted authorization: one per
// handler and gateway key. It is also the PSP key of the adopted authorize
// transaction, which is how authorizedElsewhere knows one.
func externalKey(handler, gatewayKey string) string {
	return externalPrefix + handler + "|" + gatewayKey
}

const externalPrefix = "ext|"

// authorizedElsewhere reports whether p's authorization was adopted: made
// outside paybridge, for an amount paybridge does not know.
func (p *Payment) authorizedElsewhere() bool {
	auth := p.Authorization()
	return auth != nil && strings.HasPrefix(auth.PSPKey, externalPrefix)
}

// AdoptAuthorization returns the authorization token of the payment that
// holds a.GatewayKey for a.Handler, adopting it first when it is new.
func (e *Engine) AdoptAuthorization(ctx context.Context, a ExternalAuthorization) (paymentID, authToken string, refusal *Error, err error) {
	if e.store == nil {
		return "", "", nil, ErrNotReady
	}
	if a.GatewayKey == "" {
		return "", "", newError(KindInvalidRequest, CodeInvalidRequest, "a gateway key is required"), nil
	}
	if a.Amount < 0 {
		return "", "", newError(KindInvalidAmount, CodeInvalidAmount, "the amount must not be negative"), nil
	}
	if _, known := CurrencyExponent(a.Currency); !known {
		return "", "", newError(KindInvalidAmount, CodeInvalidAmount, "the currency must be an upper-case ISO 4217 code"), nil
	}
	ctx = context.WithoutCancel(ctx)
	key := externalKey(a.Handler, a.GatewayKey)
	// Every command of a payment after its first finds it adopted: a read,
	// with no commit (and no fsync) on the command's path.
	err = e.store.View(ctx, func(tx Tx) error {
		paymentID, authToken, err = adopted(tx, key)
		return err
	})
	if err == nil && paymentID != "" {
		return paymentID, authToken, nil, nil
	}
	if err != nil {
		return "", "", nil, err
	}
	unlock := e.keys.lock(key)
	defer unlock()
	err = e.store.Update(ctx, func(tx Tx) error {
		var err error
		if paymentID, authToken, err = adopted(tx, key); err != nil || paymentID != "" {
			return err
		}
		now := e.now()
		p := e.newPayment(Request{
			Platform: a.Platform, Handler: a.Handler, Gateway: a.Gateway, Amount: a.Amount,
			Currency: a.Currency, SourceToken: a.GatewayKey, Purchase: a.Purchase,
		}, now)
		t := &Transaction{
			ID: newID("tx_"), Kind: Authorize, Token: newID("pbt_"), Amount: a.Amount,
			State: Succeeded, PSPKey: key, PSPRef: a.GatewayKey, CreatedAt: now, UpdatedAt: now,
		}
		p.Txs = append(p.Txs, t)
		p.Authorized, p.Status = a.Amount, StatusAuthorized
		paymentID, authToken = p.ID, t.Token
		return tx.PutPayment(p)
	})
	return paymentID, authToken, nil, err
}

// adopted returns the payment and authorization token that external key
// names, or "" when there is none yet.
func adopted(tx Tx, key string) (paymentID, authToken string, err error) {
	id, err := tx.PaymentIDByToken(key)
	if errors.Is(err, ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	p, err := tx.Payment(id)
	if err != nil {
		return "", "", err
	}
	auth := p.Authorization()
	if auth == nil {
		return "", "", fmt.Errorf("payment: adopted payment %s has no authorization", id)
	}
	return p.ID, auth.Token, nil
}

// reauthorized records a revalidation that re-authorized: the PSP's new
// reference becomes the authorization's, and the platform's name for it
// (the new gateway key) resolves to this payment from now on.
func (p *Payment) reauthorized(t *Transaction) {
	if t.Kind != Revalidate || t.PSPRef == "" {
		return
	}
	auth := p.Authorization()
	if auth == nil || auth.PSPRef == t.PSPRef {
		return
	}
	auth.PSPRef = t.PSPRef
	p.Aliases = append(p.Aliases, externalKey(p.Handler, t.PSPRef))
}
