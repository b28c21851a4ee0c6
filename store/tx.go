package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/paybridge/caddy-paybridge/payment"
)

// maxAttempts bounds conflict retries. Conflicts only happen between
// requests on the same records (one payment, one outbox message), so even a
// burst of duplicate platform retries settles in a few rounds; running out
// means something keeps rewriting a key and retrying longer would not help.
const maxAttempts = 100

// View runs fn in a read-only transaction: a consistent snapshot.
func (s *Store) View(ctx context.Context, fn func(payment.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return fn(&tx{s: s, kv: txnKV{txn}, readOnly: true})
}

// update runs fn in a read-write transaction, again on conflict.
func (s *Store) update(ctx context.Context, fn func(*badger.Txn) error) error {
	return retryConflicts(ctx, func() error { return s.try(fn) })
}

// errConflict marks a commit conflict (Badger's, or the batcher finding an
// Update's reads out of date), as opposed to an error of fn's that happens
// to wrap badger.ErrConflict and must not be retried.
var errConflict = errors.New("store: commit conflict")

func (s *Store) try(fn func(*badger.Txn) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return err
	}
	err := txn.Commit()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrConflict):
		return errConflict
	default:
		return fmt.Errorf("store: commit: %w", err)
	}
}
