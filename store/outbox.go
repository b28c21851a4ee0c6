package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Enqueued is signalled after a commit that enqueued a message. It holds at
// most one signal: a worker woken once drains every queue anyway.
func (s *Store) Enqueued() <-chan struct{} { return s.enqueued }

func (s *Store) signalEnqueued() {
	select {
	case s.enqueued <- struct{}{}:
	default:
	}
}

func (s *Store) nextSeq() (uint64, error) {
	for {
		n, err := s.seq.Next()
		if err != nil {
			return 0, fmt.Errorf("store: outbox sequence: %w", err)
		}
		// A new sequence starts at 0, which is also what an unassigned
		// Message.Seq looks like.
		if n != 0 {
			return n, nil
		}
	}
}

// Heads returns the first message of up to limit queues, oldest first. It
// reads one message per queue however long the queue's backlog.
//
// Successive calls go round the queues, each starting after the last queue
// the previous call returned: the worker skips heads that are not due yet,
// and always starting from the first queue would let limit failing queues
// hide every queue behind them.
func (s *Store) Heads(limit int) ([]payment.Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	s.headsMu.Lock()
	defer s.headsMu.Unlock()
	var (
		heads []payment.Message
		last  []byte
	)
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(iterOptions(prefixOutbox, false))
		defer it.Close()
		// collect reads queue heads from key from until key until (nil:
		// the end of the outbox).
		collect := func(from, until []byte) error {
			for it.Seek(from); it.Valid() && len(heads) < limit; {
				item := it.Item()
				if until != nil && bytes.Compare(item.Key(), until) >= 0 {
					return nil
				}
				end, err := queueEnd(item.Key())
				if err != nil {
					return err
				}
				m, err := decodeMessage(item)
				if err != nil {
					return err
				}
				heads = append(heads, m)
				last = end
				it.Seek(end)
			}
			return nil
		}
		if s.headsCursor == nil {
			return collect(prefixOutbox, nil)
		}
		if err := collect(s.headsCursor, nil); err != nil {
			return err
		}
		return collect(prefixOutbox, s.headsCursor)
	})
	if err != nil {
		return nil, err
	}
	s.headsCursor = last
	slices.SortFunc(heads, func(a, b payment.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	return heads, nil
}

// Delivered removes m from its queue, exposing the next message.
func (s *Store) Delivered(m payment.Message) error {
	if err := validQueue(&m); err != nil {
		return err
	}
	return s.update(context.Background(), func(txn *badger.Txn) error {
		return txn.Delete(outboxKey(&m))
	})
}

// Reschedule stores m's Attempts, NextAttempt and LastError; the rest of the
// stored message is kept as it was enqueued. It returns payment.ErrNotFound
// if m is no longer queued.
//
// seen is the NextAttempt m had when its attempt began. If the stored one
// has become zero since, an operator asked for m now (Replay) while the
// attempt was under way: that request stands, and m stays due now.
func (s *Store) Reschedule(m payment.Message, seen time.Time) error {
	if err := validQueue(&m); err != nil {
		return err
	}
	return s.update(context.Background(), func(txn *badger.Txn) error {
		k := outboxKey(&m)
		stored, err := getMessage(txn, k)
		if err != nil {
			return err
		}
		askedForNow := stored.NextAttempt.IsZero() && !seen.IsZero()
		retried(stored, &m)
		if askedForNow {
			stored.NextAttempt = time.Time{}
		}
		return setJSON(txn, k, stored)
	})
}

// Kill moves m to the dead letters, with its last Attempts, NextAttempt and
// LastError, in one transaction so it is never in both places or neither.
// It returns payment.ErrNotFound if m is no longer queued.
func (s *Store) Kill(m payment.Message) error {
	if err := validQueue(&m); err != nil {
		return err
	}
	return s.update(context.Background(), func(txn *badger.Txn) error {
		k := outboxKey(&m)
		stored, err := getMessage(txn, k)
		if err != nil {
			return err
		}
		retried(stored, &m)
		stored.Dead = true
		if err := txn.Delete(k); err != nil {
			return err
		}
		return setJSON(txn, deadKey(stored.Seq), stored)
	})
}

func retried(stored, m *payment.Message) {
	stored.Attempts = m.Attempts
	stored.NextAttempt = m.NextAttempt
	stored.LastError = m.LastError
}

// DeadLetters lists up to limit killed messages, oldest first.
func (s *Store) DeadLetters(limit int) ([]payment.Message, error) {
	return s.list(prefixDead, limit)
}

// PendingMessages lists up to limit live messages of every queue, grouped
// by queue and in Seq order within one.
func (s *Store) PendingMessages(limit int) ([]payment.Message, error) {
	return s.list(prefixOutbox, limit)
}

func (s *Store) list(prefix []byte, limit int) ([]payment.Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []payment.Message
	err := s.view(func(txn *badger.Txn) error {
		opts := iterOptions(prefix, true)
		opts.PrefetchSize = min(limit, opts.PrefetchSize)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < limit; it.Next() {
			m, err := decodeMessage(it.Item())
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

func (s *Store) view(fn func(*badger.Txn) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	return s.db.View(fn)
}

func iterOptions(prefix []byte, values bool) badger.IteratorOptions {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = values
	return opts
}

func getMessage(txn *badger.Txn, k []byte) (*payment.Message, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, payment.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	m, err := decodeMessage(item)
	return &m, err
}

func decodeMessage(item *badger.Item) (payment.Message, error) {
	var m payment.Message
	err := item.Value(func(v []byte) error { return json.Unmarshal(v, &m) })
	if err != nil {
		return m, fmt.Errorf("store: message %q: %w", item.Key(), err)
	}
	return m, nil
}

func setJSON(txn *badger.Txn, k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(k, b)
}
