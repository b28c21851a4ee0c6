package store

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Replay is the operator's "deliver this again now" for the message with
// sequence number seq:
//
//   - a dead letter goes back into its queue, under its old key (so it is
//     ahead of anything queued for the same destination and payment since),
//     as a message never tried: Attempts 0, no NextAttempt or LastError, and
//     CreatedAt now, so max_age counts afresh. It is never in both places or
//     neither.
//   - a live message is made due now (its NextAttempt is cleared); its
//     attempts and age are kept.
//
// Either way the Enqueued channel is signalled. Replay returns the message
// as it is now stored, or payment.ErrNotFound when seq is neither dead nor
// queued.
func (s *Store) Replay(seq uint64, now time.Time) (payment.Message, error) {
	var (
		out    payment.Message
		queued []byte // the outbox key of seq, once found
	)
	err := s.update(context.Background(), func(txn *badger.Txn) error {
		m, err := getMessage(txn, deadKey(seq))
		switch {
		case err == nil:
			if err := validQueue(m); err != nil {
				return err
			}
			m.Seq = seq
			m.Dead = false
			m.Attempts = 0
			m.NextAttempt = time.Time{}
			m.LastError = ""
			m.CreatedAt = now
			if err := txn.Delete(deadKey(seq)); err != nil {
				return err
			}
			if err := setJSON(txn, outboxKey(m), m); err != nil {
				return err
			}
			out = *m
			return nil
		case !errors.Is(err, payment.ErrNotFound):
			return err
		}

		if queued == nil {
			// The key of a message never changes, so one scan serves
			// every conflict retry.
			if queued, err = s.findQueued(seq); err != nil {
				return err
			}
		}
		// Read through txn, so a concurrent delivery or kill of the
		// message makes this commit conflict and run again.
		m, err = getMessage(txn, queued)
		if err != nil {
			return err
		}
		m.NextAttempt = time.Time{}
		if err := setJSON(txn, queued, m); err != nil {
			return err
		}
		out = *m
		return nil
	})
	if err != nil {
		return payment.Message{}, err
	}
	s.signalEnqueued()
	return out, nil
}

// findQueued returns the outbox key of the live message seq, or
// payment.ErrNotFound. The key starts with the message's queue, which the
// caller does not know, so every outbox key is looked at (keys only: the
// values stay on disk). It reads in its own snapshot: tracking every key of
// the outbox in Replay's transaction would make it conflict with any
// delivery in the meantime. It returns errConflict, which Store.update
// retries, when the message is dead in its snapshot.
func (s *Store) findQueued(seq uint64) ([]byte, error) {
	var k []byte
	err := s.view(func(txn *badger.Txn) error {
		// This snapshot is newer than Replay's transaction: if the message
		// died in between, Replay must run again to replay it.
		if _, err := txn.Get(deadKey(seq)); err == nil {
			return errConflict
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(iterOptions(prefixOutbox, false))
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().Key()
			if len(key) < len(prefixOutbox)+1+8 || key[len(key)-9] != 0 {
				continue
			}
			if binary.BigEndian.Uint64(key[len(key)-8:]) == seq {
				k = it.Item().KeyCopy(nil)
				return nil
			}
		}
		return payment.ErrNotFound
	})
	return k, err
}

// OutboxCounts counts the live messages and the dead letters, reading keys
// only.
func (s *Store) OutboxCounts() (pending, dead int, err error) {
	err = s.view(func(txn *badger.Txn) error {
		count := func(prefix []byte) int {
			it := txn.NewIterator(iterOptions(prefix, false))
			defer it.Close()
			n := 0
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return n
		}
		pending = count(prefixOutbox)
		dead = count(prefixDead)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return pending, dead, nil
}
