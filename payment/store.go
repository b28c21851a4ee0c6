package payment

import (
	"context"
	"time"
)

// Store keeps payments, idempotency records and the outbox durably. Every
// Update is atomic and durable when it returns (invariants are checked and
// written in one transaction, so two concurrent requests cannot both pass a
// check); implementations retry fn on conflict, so fn must have no side
// effects besides calls on Tx.
type Store interface {
	Update(ctx context.Context, fn func(Tx) error) error
	View(ctx context.Context, fn func(Tx) error) error
	// OpenPayments lists the ids of payments with open transactions.
	OpenPayments(ctx context.Context) ([]string, error)
}

// Tx is one store transaction.
type Tx interface {
	// Payment returns ErrNotFound when id is unknown.
	Payment(id string) (*Payment, error)
	// PutPayment writes p and keeps its indexes: every token of p.Tokens()
	// resolves to it, and it is listed by OpenPayments while p.Open().
	PutPayment(p *Payment) error
	// PaymentIDByToken resolves a transaction token, action id or PSP key.
	PaymentIDByToken(token string) (string, error)
	Idempotency(key string) (*IdempotencyRecord, error)
	PutIdempotency(r *IdempotencyRecord) error
	DeleteIdempotency(key string) error
	// Enqueue appends m to the outbox, assigning m.Seq (increasing). The
	// same transaction must read m's payment (Payment): the store orders a
	// queue by Seq, and only that shared read makes two transactions that
	// enqueue for one payment conflict, so their Seqs follow commit order.
	Enqueue(m *Message) error
}

// IdempotencyRecord remembers a platform call that changed state.
type IdempotencyRecord struct {
	Key       string `json:"key"`
	Done      bool   `json:"done"` // false: a call is (or was, before a crash) in flight
	PaymentID string `json:"payment_id,omitempty"`
	TxID      string `json:"tx_id,omitempty"`
	Answer    Answer `json:"answer"` // the first answer, replayed byte for byte
	// Amount is what the first call asked for (0: none, or the whole). A
	// repeat that asks for another amount is refused, not answered with
	// the first call's outcome as if it were its own.
	Amount int64 `json:"amount,omitempty"`
	// Currency is the first call's payment's: a repeat in another currency
	// is refused like one for another amount.
	Currency  string    `json:"currency,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Answer is a platform-encoded reply; the engine stores and replays it
// without knowing the format.
type Answer struct {
	Status int    `json:"status"`
	Body   []byte `json:"body"`
}

// Message is one outbound delivery. Its URL and signing secret are not in
// it: they are looked up by Kind and Target at send time, so a reload or a
// secret rotation applies to queued work.
type Message struct {
	Seq       uint64    `json:"seq"`
	Kind      string    `json:"kind"`   // who encodes and signs it: "commercelayer", ...
	Target    string    `json:"target"` // the handler (or endpoint) name
	PaymentID string    `json:"payment_id"`
	Body      []byte    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	Attempts  int       `json:"attempts"`
	// NextAttempt is zero for a message never tried.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Dead        bool      `json:"dead,omitempty"`
}

// Queue names the ordering group of m: messages of one payment to one
// destination are delivered in Seq order, other groups independently.
func (m *Message) Queue() string { return m.Kind + "\x00" + m.Target + "\x00" + m.PaymentID }

// Outbox is the queue the delivery worker drains. Messages of one Queue()
// are kept in Seq order; only a queue's head is ever delivered.
type Outbox interface {
	// Heads returns the first live message of up to limit queues.
	Heads(limit int) ([]Message, error)
	// Delivered removes m.
	Delivered(m Message) error
	// Reschedule stores m's new Attempts, NextAttempt and LastError. seen
	// is the NextAttempt m had when its attempt began: if it was cleared
	// since (an operator asked for m now), m stays due now.
	Reschedule(m Message, seen time.Time) error
	// Kill moves m to the dead letters, kept for inspection and replay.
	Kill(m Message) error
	// Enqueued is signalled (without blocking) after every commit that
	// enqueued a message.
	Enqueued() <-chan struct{}
}
