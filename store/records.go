package store

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/paybridge/caddy-paybridge/payment"
)

// tx is the payment.Tx of one Update or View attempt.
type tx struct {
	s        *Store
	kv       kv
	readOnly bool
	enqueued bool // whether a commit must signal Store.Enqueued
	// indexed is, for each payment this tx read or wrote, what its stored
	// version already has in the indexes: PutPayment writes only the
	// difference, without reading the indexes back.
	indexed map[string]indexedPayment
}

type indexedPayment struct {
	tokens map[string]struct{}
	open   bool
}

func indexedOf(p *payment.Payment) indexedPayment {
	ts := p.Tokens()
	ix := indexedPayment{tokens: make(map[string]struct{}, len(ts)), open: p.Open()}
	for _, tok := range ts {
		ix.tokens[tok] = struct{}{}
	}
	return ix
}

var errReadOnly = errors.New("store: write in a View transaction")

// readValue reads k through the transaction, which both sees the transaction's
// own writes and records the read for conflict detection, and decodes it
// with decode.
func readValue[T any](t *tx, k []byte, v *T, decode func([]byte, *T) error) error {
	b, err := t.kv.get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return payment.ErrNotFound
	}
	if err != nil {
		return err
	}
	return decode(b, v)
}

func writeValue[T any](t *tx, k []byte, v *T, encode func(*T) ([]byte, error)) error {
	if t.readOnly {
		return errReadOnly
	}
	b, err := encode(v)
	if err != nil {
		return err
	}
	return t.kv.set(k, b)
}

func encodeJSON[T any](v *T) ([]byte, error) { return json.Marshal(v) }

func (t *tx) Payment(id string) (*payment.Payment, error) {
	if id == "" {
		return nil, payment.ErrNotFound
	}
	p := new(payment.Payment)
	if err := readValue(t, paymentKey(id), p, decodePayment); err != nil {
		if errors.Is(err, payment.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("store: payment %s: %w", id, err)
	}
	if !t.readOnly {
		if _, ok := t.indexed[id]; !ok {
			if t.indexed == nil {
				t.indexed = make(map[string]indexedPayment)
			}
			t.indexed[id] = indexedOf(p)
		}
	}
	return p, nil
}

func (t *tx) PutPayment(p *payment.Payment) error {
	if t.readOnly {
		return errReadOnly
	}
	if p.ID == "" {
		return errors.New("store: payment without id")
	}
	if err := writeValue(t, paymentKey(p.ID), p, encodePayment); err != nil {
		return fmt.Errorf("store: payment %s: %w", p.ID, err)
	}
	prev, known := t.indexed[p.ID]
	for _, tok := range p.Tokens() {
		if _, done := prev.tokens[tok]; done || tok == "" {
			continue
		}
		if err := t.kv.set(tokenKey(tok), []byte(p.ID)); err != nil {
			return fmt.Errorf("store: token index: %w", err)
		}
	}
	if !known || prev.open != p.Open() {
		var err error
		if p.Open() {
			err = t.kv.set(openKey(p.ID), nil)
		} else {
			err = t.kv.del(openKey(p.ID))
		}
		if err != nil {
			return err
		}
	}
	if t.indexed == nil {
		t.indexed = make(map[string]indexedPayment)
	}
	t.indexed[p.ID] = indexedOf(p)
	return nil
}

// Token index: a token leads to the payment that has it. Tokens are only
// ever added to a payment, and a token already in the stored version was
// indexed when that version was written, so only new ones are written. A
// new token that names another payment moves to this one: transaction
// tokens are random and never collide, but a PSP idempotency key is shared
// on purpose by the payments of one platform call's repeated attempts (an
// authorization declined, then tried again), and it must lead to the newest
// of them. An older payment rewritten later does not take it back.

func (t *tx) PaymentIDByToken(token string) (string, error) {
	if token == "" {
		return "", payment.ErrNotFound
	}
	v, err := t.kv.get(tokenKey(token))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", payment.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: token index: %w", err)
	}
	return string(v), nil
}

func (t *tx) Idempotency(key string) (*payment.IdempotencyRecord, error) {
	r := new(payment.IdempotencyRecord)
	if err := readValue(t, idempotencyKey(key), r, decodeIdempotency); err != nil {
		if errors.Is(err, payment.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("store: idempotency record: %w", err)
	}
	return r, nil
}

func (t *tx) PutIdempotency(r *payment.IdempotencyRecord) error {
	if r.Key == "" {
		return errors.New("store: idempotency record without key")
	}
	if err := writeValue(t, idempotencyKey(r.Key), r, encodeIdempotency); err != nil {
		return fmt.Errorf("store: idempotency record: %w", err)
	}
	return nil
}

func (t *tx) DeleteIdempotency(key string) error {
	if t.readOnly {
		return errReadOnly
	}
	return t.kv.del(idempotencyKey(key))
}

func (t *tx) Enqueue(m *payment.Message) error {
	if t.readOnly {
		return errReadOnly
	}
	if err := validQueue(m); err != nil {
		return err
	}
	seq, err := t.s.nextSeq()
	if err != nil {
		return err
	}
	m.Seq = seq
	if err := writeValue(t, outboxKey(m), m, encodeJSON); err != nil {
		return fmt.Errorf("store: enqueue: %w", err)
	}
	t.enqueued = true
	return nil
}
