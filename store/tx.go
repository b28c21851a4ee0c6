package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/paybridge/caddy-paybridge/payment"
)

// maxAttempts bounds conflict retries. Conflicts only happen between
// requests on the same records (one payment, one outbox message), so even a
// burst of duplicate platform retries settles in a few rounds; running out
// means something keeps rewriting a key and retrying longer would not help.
const maxAttempts = 100

// Update runs fn in a read-write transaction and commits it durably. Reads
// through the Tx are tracked by Badger, so if another commit changed a key
// fn read, the commit fails with a conflict and fn runs again on fresh data:
// a check and the write that depends on it are atomic. An error from fn is
// returned as is and nothing is written.
func (s *Store) Update(ctx context.Context, fn func(payment.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.commits == nil {
		return s.updateAlone(ctx, fn)
	}
	r := &commitReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.commits <- r:
	case <-s.closing:
		return badger.ErrDBClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once handed over, the outcome is awaited whatever ctx says: the
	// writes may already be on their way to disk.
	select {
	case err := <-r.done:
		return err
	case <-s.batcherDone:
		select {
		case err := <-r.done:
			return err
		default:
			return badger.ErrDBClosed
		}
	}
}

// updateAlone runs fn in a transaction of its own, again on conflict.
func (s *Store) updateAlone(ctx context.Context, fn func(payment.Tx) error) error {
	var enqueued bool
	err := s.update(ctx, func(txn *badger.Txn) error {
		t := &tx{s: s, kv: txnKV{txn}}
		err := fn(t)
		enqueued = t.enqueued
		return err
	})
	if err == nil && enqueued {
		s.signalEnqueued()
	}
	return err
}

// View runs fn in a read-only transaction: a consistent snapshot.
func (s *Store) View(ctx context.Context, fn func(payment.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.db.IsClosed() {
		return badger.ErrDBClosed
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return fn(&tx{s: s, kv: txnKV{txn}, readOnly: true})
}

// update runs fn in a read-write transaction, again on conflict.
func (s *Store) update(ctx context.Context, fn func(*badger.Txn) error) error {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Badger does not refuse transactions on a closed DB; it would
		// fail later with a less helpful error.
		if s.db.IsClosed() {
			return badger.ErrDBClosed
		}
		err := s.try(fn)
		if !errors.Is(err, errConflict) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("store: giving up after %d conflicting attempts: %w", attempt, badger.ErrConflict)
		}
		// Writers that just collided would likely collide again if they
		// retried in lockstep; a random pause, growing with contention,
		// spreads them out. A commit takes about one fsync, so a few
		// hundred microseconds is the right scale.
		pause := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(100*time.Microsecond)))
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// errConflict marks a commit conflict, as opposed to an error of fn's that
// happens to wrap badger.ErrConflict and must not be retried.
var errConflict = errors.New("store: commit conflict")

func (s *Store) try(fn func(*badger.Txn) error) error {
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
