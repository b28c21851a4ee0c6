package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Concurrent Updates of different payments share commits, and every one
// that returned nil is durable: it is there after a reopen.
func TestGroupCommitBatchesAndIsDurable(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := newPayment(fmt.Sprint("gc", i))
			errs <- s.Update(context.Background(), func(tx payment.Tx) error { return tx.PutPayment(p) })
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	commits, updates := s.CommitStats()
	t.Logf("%d updates in %d commits", updates, commits)
	if updates != n {
		t.Errorf("group commit carried %d updates, want %d", updates, n)
	}
	if commits >= n {
		t.Errorf("%d commits for %d concurrent updates: nothing was grouped", commits, n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for i := range n {
		if p := get(t, s2, fmt.Sprint("gc", i)); p == nil {
			t.Fatalf("payment gc%d lost", i)
		}
	}
}

// A refused Update in a batch changes nothing, and does not hold back the
// others of its batch.
func TestGroupCommitRefusedUpdateWritesNothing(t *testing.T) {
	s, _ := openTemp(t)
	refusal := errors.New("refused")
	const n = 200
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := newPayment(fmt.Sprint("r", i))
			err := s.Update(context.Background(), func(tx payment.Tx) error {
				if err := tx.PutPayment(p); err != nil {
					return err
				}
				if i%2 == 1 {
					return refusal // after writing: the write must vanish
				}
				return nil
			})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, refusal):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != n/2 || refused.Load() != n/2 {
		t.Fatalf("ok %d refused %d, want %d each", ok.Load(), refused.Load(), n/2)
	}
	for i := range n {
		var err error
		_ = s.View(context.Background(), func(tx payment.Tx) error {
			_, err = tx.Payment(fmt.Sprint("r", i))
			return nil
		})
		switch {
		case i%2 == 0 && err != nil:
			t.Errorf("accepted payment r%d missing: %v", i, err)
		case i%2 == 1 && !errors.Is(err, payment.ErrNotFound):
			t.Errorf("refused payment r%d was written (err %v)", i, err)
		}
		id := ""
		_ = s.View(context.Background(), func(tx payment.Tx) error {
			id, _ = tx.PaymentIDByToken(fmt.Sprint("tok-r", i))
			return nil
		})
		if i%2 == 1 && id != "" {
			t.Errorf("refused payment r%d left its token index behind", i)
		}
	}
}

// Updates closed out by Close are answered, never left waiting.
func TestGroupCommitCloseAnswersEveryone(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := newPayment(fmt.Sprint("c", i))
			_ = s.Update(context.Background(), func(tx payment.Tx) error { return tx.PutPayment(p) })
		}()
	}
	s.Close()
	wg.Wait() // a hang here is the failure
}

// An Update too big for a shared commit leaves none of its writes behind,
// and the Updates batched with it still commit.
func TestGroupCommitOversizedUpdateWritesNothing(t *testing.T) {
	s, _ := openTemp(t)
	var wg sync.WaitGroup
	var bigErr error
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := newPayment(fmt.Sprint("s", i))
			if i == 25 {
				// ~20,000 token index entries: over the entries Badger
				// allows one transaction with 4 MiB memtables.
				for n := range 20000 {
					tx := *p.Txs[0]
					tx.ID, tx.Token = fmt.Sprint("s25-t", n), fmt.Sprint("tok-s25-", n)
					p.Txs = append(p.Txs, &tx)
				}
			}
			err := s.Update(context.Background(), func(tx payment.Tx) error { return tx.PutPayment(p) })
			if i == 25 {
				bigErr = err
			} else if err != nil {
				t.Errorf("update s%d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if bigErr == nil {
		t.Fatal("a 20,000-entry transaction was accepted; the test needs one Badger refuses")
	}
	for i := range 50 {
		var err error
		var id string
		_ = s.View(context.Background(), func(tx payment.Tx) error {
			_, err = tx.Payment(fmt.Sprint("s", i))
			id, _ = tx.PaymentIDByToken(fmt.Sprint("tok-s", i))
			return nil
		})
		if i == 25 {
			if !errors.Is(err, payment.ErrNotFound) || id != "" {
				t.Errorf("the refused oversized update left writes behind (payment err %v, token index %q)", err, id)
			}
		} else if err != nil {
			t.Errorf("payment s%d: %v", i, err)
		}
	}
}

// Updates' functions run in their callers' goroutines, at the same time,
// not one after another in the goroutine that commits: two Updates that
// each wait for the other to have started both finish.
func TestGroupCommitRunsUpdatesConcurrently(t *testing.T) {
	s, _ := openTemp(t)
	var started sync.WaitGroup
	started.Add(2)
	both := make(chan struct{})
	go func() { started.Wait(); close(both) }()
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			errs <- s.Update(context.Background(), func(tx payment.Tx) error {
				started.Done()
				select {
				case <-both:
				case <-time.After(5 * time.Second):
					return errors.New("the other Update never started: functions run one at a time")
				}
				return tx.PutPayment(newPayment(fmt.Sprint("conc", i)))
			})
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A write made outside the batcher (the outbox's own transactions) to a
// key an Update read makes that Update run again on the new value.
func TestGroupCommitSeesWritesOutsideTheBatcher(t *testing.T) {
	s, _ := openTemp(t)
	put(t, s, newPayment("out1"))
	runs := 0
	err := s.Update(context.Background(), func(tx payment.Tx) error {
		runs++
		p, err := tx.Payment("out1")
		if err != nil {
			return err
		}
		if runs == 1 {
			// Between this Update's snapshot and its commit.
			if err := s.update(context.Background(), func(txn *badger.Txn) error {
				q := *p
				q.Captured = 500
				return setJSON(txn, paymentKey("out1"), &q)
			}); err != nil {
				return err
			}
		}
		p.Captured += 100
		return tx.PutPayment(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Errorf("the Update ran %d times, want 2 (once stale, once fresh)", runs)
	}
	if got := get(t, s, "out1").Captured; got != 600 {
		t.Errorf("captured %d, want 600: the outside write was lost", got)
	}
}

// Closing while Updates and Views are running answers each of them with
// its result or ErrDBClosed: none reaches Badger after it closed (Badger
// would panic or fail obscurely), and none is left waiting.
func TestCloseWhileBusy(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var done atomic.Int64
	errs := make(chan error, 1000)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprint("busy", w, "-", i)
				err := s.Update(context.Background(), func(tx payment.Tx) error { return tx.PutPayment(newPayment(id)) })
				if err == nil {
					err = s.View(context.Background(), func(tx payment.Tx) error { _, err := tx.Payment(id); return err })
				}
				if err != nil {
					if !errors.Is(err, badger.ErrDBClosed) {
						errs <- err
					}
					return
				}
				done.Add(1)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("during Close: %v", err)
	}
	if done.Load() == 0 {
		t.Fatal("no update finished before Close: the test measured nothing")
	}
}
