package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Key layout. Every key starts with a one-letter prefix and a slash, so one
// prefix scan lists one kind of record and nothing else:
//
//	meta/schema                      schemaVersion, written on a new DB
//	seq/outbox                       Badger sequence lease for Message.Seq
//	p/<payment id>                   payment.Payment (encoding.go)
//	t/<token>                        payment id; every token of Payment.Tokens()
//	i/<sha256(idempotency key)>      payment.IdempotencyRecord (encoding.go)
//	q/<payment id>                   empty; present iff Payment.Open()
//	o/<kind>\x00<target>\x00<payment id>\x00<seq>
//	                                 JSON payment.Message, live
//	d/<seq>                          JSON payment.Message, dead
//
// <seq> is 8 bytes big-endian so byte order is numeric order. The outbox key
// begins with Message.Queue(), so a queue's messages are adjacent and in Seq
// order, and "o/<queue>\x01" sorts after all of them and before any other
// queue: that is how Heads skips a backlog with one Seek. It only holds if
// no part of a queue contains \x00 or \x01, which validQueue enforces.
//
// Idempotency keys are hashed because platforms choose them and may make
// them long; Badger keys are kept in the LSM tree and its caches.
//
// Changing any of this means bumping schemaVersion.
const schemaVersion = "2"

// schemaVersionJSON is the layout above with payments and idempotency
// records in JSON. This build reads those values, so it opens such a store
// and stamps it with schemaVersion.
const schemaVersionJSON = "1"

var (
	keySchema = []byte("meta/schema")
	keySeq    = []byte("seq/outbox")

	prefixPayment     = []byte("p/")
	prefixToken       = []byte("t/")
	prefixIdempotency = []byte("i/")
	prefixOpen        = []byte("q/")
	prefixOutbox      = []byte("o/")
	prefixDead        = []byte("d/")
)

func key(prefix []byte, s string) []byte {
	k := make([]byte, 0, len(prefix)+len(s))
	return append(append(k, prefix...), s...)
}

func paymentKey(id string) []byte  { return key(prefixPayment, id) }
func tokenKey(token string) []byte { return key(prefixToken, token) }
func openKey(id string) []byte     { return key(prefixOpen, id) }

func idempotencyKey(k string) []byte {
	sum := sha256.Sum256([]byte(k))
	return append(append(make([]byte, 0, len(prefixIdempotency)+len(sum)), prefixIdempotency...), sum[:]...)
}

var errBadQueue = errors.New("store: message kind, target and payment id must not contain \\x00 or \\x01")

func validQueue(m *payment.Message) error {
	for _, s := range [...]string{m.Kind, m.Target, m.PaymentID} {
		if strings.ContainsAny(s, "\x00\x01") {
			return errBadQueue
		}
	}
	return nil
}

func outboxKey(m *payment.Message) []byte {
	q := m.Queue()
	k := make([]byte, 0, len(prefixOutbox)+len(q)+1+8)
	k = append(append(k, prefixOutbox...), q...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, m.Seq)
}

// queueEnd returns the smallest key after every message of the queue that
// outbox key k belongs to. It returns a fresh slice: Badger reuses k.
func queueEnd(k []byte) ([]byte, error) {
	if len(k) < len(prefixOutbox)+1+8 || k[len(k)-9] != 0 {
		return nil, fmt.Errorf("store: malformed outbox key %q", k)
	}
	q := k[:len(k)-9]
	return append(append(make([]byte, 0, len(q)+1), q...), 1), nil
}

func deadKey(seq uint64) []byte {
	k := make([]byte, 0, len(prefixDead)+8)
	return binary.BigEndian.AppendUint64(append(k, prefixDead...), seq)
}
