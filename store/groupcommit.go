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

// Group commit: with SyncWrites, every Badger commit costs an fsync, and
// Badger syncs once per write request, so the store makes many Updates
// durable with one Badger transaction.
//
// The work of an Update (reads, decoding, the engine's rules, encoding) runs
// in the caller's goroutine, concurrently with every other Update, against a
// snapshot; only its reads' versions and its writes go to the batcher. The
// batcher is the one goroutine that commits: it checks that nothing an
// Update read has changed since its snapshot (neither in the store nor
// earlier in the same batch), adds the Update's writes to the batch's
// transaction, and commits the batch with one fsync. An Update whose reads
// went stale runs again on a fresh snapshot, so a check and the write that
// depends on it stay atomic. None returns before the commit holding its
// writes is durable.
//
// An earlier version ran each Update's function inside the batcher, on the
// batch's transaction. That was simpler but made all that work serial:
// about 40% of Caddy's CPU in the sync benchmark ran on that one goroutine.

const (
	// maxBatch bounds how many Updates share a commit.
	maxBatch = 128
	// maxBatchBytes keeps a batch inside the size Badger accepts for one
	// transaction (15% of the memtable: about 600 KiB with 4 MiB
	// memtables), counting Badger's per-entry overhead generously. An
	// Update larger than this on its own is committed alone.
	maxBatchBytes = 512 << 10
	entryOverhead = 64
)

type commitReq struct {
	reads    []readVersion
	writes   []write
	size     int
	enqueued bool
	done     chan error
}

// Update runs fn against a consistent snapshot and commits its writes
// durably, together with concurrent Updates. If something fn read changed
// before the commit, fn runs again on fresh data. An error from fn is
// returned as is and nothing is written.
func (s *Store) Update(ctx context.Context, fn func(payment.Tx) error) error {
	return retryConflicts(ctx, func() error {
		r, err := s.prepare(fn)
		if err != nil || r == nil {
			return err
		}
		return s.commit(r)
	})
}

// prepare runs fn on a snapshot. It returns nil and no error when fn wrote
// nothing: there is nothing to commit.
func (s *Store) prepare(fn func(payment.Tx) error) (*commitReq, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	snap := s.db.NewTransaction(false)
	defer snap.Discard()
	rec := newRecorder(snap)
	t := &tx{s: s, kv: rec}
	if err := fn(t); err != nil {
		return nil, err
	}
	writes, size := rec.pending()
	if len(writes) == 0 {
		return nil, nil
	}
	return &commitReq{
		reads:    rec.reads,
		writes:   writes,
		size:     size,
		enqueued: t.enqueued,
		done:     make(chan error, 1),
	}, nil
}

// commit hands r to the batcher and waits for its outcome. Once handed
// over, the outcome is awaited whatever the caller's context says: the
// writes may already be on their way to disk.
func (s *Store) commit(r *commitReq) error {
	select {
	case s.commits <- r:
	case <-s.closing:
		return badger.ErrDBClosed
	}
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

// retryConflicts runs attempt until it returns anything but errConflict,
// at most maxAttempts times, pausing between attempts. Writers that just
// collided would likely collide again if they retried in lockstep; a random
// pause, growing with contention, spreads them out. A commit takes about
// one fsync, so a few hundred microseconds is the right scale.
func retryConflicts(ctx context.Context, attempt func() error) error {
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := attempt()
		if !errors.Is(err, errConflict) {
			return err
		}
		if n == maxAttempts {
			return fmt.Errorf("store: giving up after %d conflicting attempts: %w", n, badger.ErrConflict)
		}
		pause := time.NewTimer(time.Duration(rand.Int64N(int64(min(n, 20)) * int64(100*time.Microsecond))))
		select {
		case <-ctx.Done():
			pause.Stop()
			return ctx.Err()
		case <-pause.C:
		}
	}
}

// batcher commits Updates in batches until the store closes.
func (s *Store) batcher() {
	defer close(s.batcherDone)
	for {
		var first *commitReq
		select {
		case first = <-s.commits:
		case <-s.closing:
			// Finish what was handed over before the close; later
			// Updates see batcherDone and give up.
			for {
				select {
				case r := <-s.commits:
					s.commitBatch([]*commitReq{r})
				default:
					return
				}
			}
		}
		batch := []*commitReq{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.commits:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
	}
}

// commitBatch commits batch in as few Badger transactions as its size
// allows: usually one.
func (s *Store) commitBatch(batch []*commitReq) {
	for len(batch) > 0 {
		if s.db.IsClosed() {
			for _, r := range batch {
				r.done <- badger.ErrDBClosed
			}
			return
		}
		batch = s.commitSome(batch)
	}
}

// commitSome commits a prefix of batch that fits one transaction and
// returns the rest.
func (s *Store) commitSome(batch []*commitReq) (rest []*commitReq) {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	written := make(map[string]struct{})
	var joined []*commitReq
	enqueued := false
	size := 0
	for i, r := range batch {
		if len(joined) > 0 && size+r.size > maxBatchBytes {
			rest = batch[i:]
			break
		}
		if err := validate(txn, written, r.reads); err != nil {
			r.done <- err
			continue
		}
		if err := apply(txn, r.writes); err != nil {
			// Badger refused r's writes (too big) and the transaction
			// may hold part of them, so it is dropped. The Updates that
			// joined run again; r goes first in the next transaction,
			// where it is alone when it fails again: then the refusal
			// is its answer, and nothing of it was written.
			if len(joined) > 0 {
				for _, j := range joined {
					j.done <- errConflict
				}
				return batch[i:]
			}
			r.done <- fmt.Errorf("store: commit: %w", err)
			return batch[i+1:]
		}
		for _, w := range r.writes {
			written[w.key] = struct{}{}
		}
		joined = append(joined, r)
		enqueued = enqueued || r.enqueued
		size += r.size
	}
	if len(joined) == 0 {
		return rest
	}
	err := txn.Commit()
	switch {
	case err == nil:
		s.groupCommits.Add(1)
		s.groupedUpdates.Add(int64(len(joined)))
		if enqueued {
			s.signalEnqueued()
		}
	case errors.Is(err, badger.ErrConflict):
		// A write outside the batcher changed something the batch
		// read: every Update runs again on fresh data.
		err = errConflict
	default:
		err = fmt.Errorf("store: commit: %w", err)
	}
	for _, r := range joined {
		r.done <- err
	}
	return rest
}

// validate checks that every key r read still has the version r saw. The
// reads go through the batch's transaction, so Badger's own conflict
// detection also covers writes made outside the batcher between this check
// and the commit.
func validate(txn *badger.Txn, written map[string]struct{}, reads []readVersion) error {
	for _, rv := range reads {
		if _, ok := written[rv.key]; ok {
			return errConflict
		}
		var version uint64
		item, err := txn.Get([]byte(rv.key))
		switch {
		case err == nil:
			version = item.Version()
		case errors.Is(err, badger.ErrKeyNotFound):
		default:
			return fmt.Errorf("store: commit: %w", err)
		}
		if version != rv.version {
			return errConflict
		}
	}
	return nil
}

func apply(txn *badger.Txn, writes []write) error {
	for _, w := range writes {
		var err error
		if w.value == nil {
			err = txn.Delete([]byte(w.key))
		} else {
			err = txn.Set([]byte(w.key), w.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CommitStats reports how many Badger commits (fsyncs) group commit made
// and how many Updates they carried.
func (s *Store) CommitStats() (commits, updates int64) {
	return s.groupCommits.Load(), s.groupedUpdates.Load()
}
