package store

import (
	"context"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Group commit: with SyncWrites, every Badger commit costs an fsync, and
// Badger syncs once per write request. Updates that arrive while a commit
// is being synced are run together in one Badger transaction and made
// durable by one fsync. Each Update still sees the effects of those before
// it in the batch and is all-or-nothing (see overlay); none returns before
// the commit that holds its writes is durable. Writes to one payment are
// serialized by the engine before they get here, so the Updates of a batch
// touch different payments; if the batch conflicts with another commit
// anyway, its Updates are retried one by one.

// maxBatch bounds a batch: Badger refuses transactions above a size tied to
// the memtable (about 1.2 MiB with 8 MiB memtables).
const maxBatch = 64

type commitReq struct {
	ctx  context.Context
	fn   func(payment.Tx) error
	done chan error
}

// batcher runs Updates in batches until the store closes.
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

func (s *Store) commitBatch(batch []*commitReq) {
	if s.db.IsClosed() {
		for _, r := range batch {
			r.done <- badger.ErrDBClosed
		}
		return
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	var joined []*commitReq
	enqueued := false
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		o := newOverlay(txn)
		t := &tx{s: s, kv: o}
		if err := r.fn(t); err != nil {
			r.done <- err // refused: its writes are dropped with the overlay
			continue
		}
		if err := o.apply(); err != nil {
			// Too big to share, and the shared transaction may now hold
			// part of r's writes: drop it, and run everyone not yet
			// answered (those that joined, r and the rest) on their own.
			txn.Discard()
			for _, j := range joined {
				s.alone(j)
			}
			for _, rest := range batch[i:] {
				s.alone(rest)
			}
			return
		}
		joined = append(joined, r)
		enqueued = enqueued || t.enqueued
	}
	s.finishBatch(txn, joined, enqueued)
}

func (s *Store) finishBatch(txn *badger.Txn, joined []*commitReq, enqueued bool) {
	if len(joined) == 0 {
		return
	}
	err := txn.Commit()
	switch {
	case err == nil:
		s.groupCommits.Add(1)
		s.groupedUpdates.Add(int64(len(joined)))
		if enqueued {
			s.signalEnqueued()
		}
		for _, r := range joined {
			r.done <- nil
		}
	case errors.Is(err, badger.ErrConflict):
		// Someone else changed what the batch read: every Update runs
		// again on fresh data, on its own (their fns are pure).
		for _, r := range joined {
			s.alone(r)
		}
	default:
		for _, r := range joined {
			r.done <- err
		}
	}
}

// CommitStats reports how many Badger commits (fsyncs) group commit made
// and how many Updates they carried.
func (s *Store) CommitStats() (commits, updates int64) {
	return s.groupCommits.Load(), s.groupedUpdates.Load()
}

// alone runs r as a transaction of its own, with conflict retries.
func (s *Store) alone(r *commitReq) {
	r.done <- s.updateAlone(r.ctx, r.fn)
}
