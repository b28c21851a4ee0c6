package payment

import (
	"sync"
	"time"
)

// keyLocks serializes work per key (a platform call's natural key), so two
// deliveries of one call arriving together make one PSP call: the second
// waits and then replays the first's stored answer.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	held chan struct{} // holds a token while the lock is taken
	refs int
}

func (k *keyLocks) lock(key string) (unlock func()) {
	unlock, _ = k.lockUntil(key, nil)
	return unlock
}

// lockUntil waits for key's lock until giveUp fires (nil: for as long as it
// takes); ok is false when it gave up, and then nothing is held.
func (k *keyLocks) lockUntil(key string, giveUp <-chan time.Time) (unlock func(), ok bool) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyLock)
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{held: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()

	release := func() {
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
	case <-giveUp:
		release()
		return nil, false
	}
	return func() {
		<-l.held
		release()
	}, true
}

// lockForCall takes the lock of a platform call's key for a delivery with
// the given deadline. The lock may be held by an earlier delivery of the
// call, for its PSP attempts (up to their deadline) and two commits, or by
// the check of its outcome at the PSP, which may take two PSP calls
// (status, then void). A delivery waits for it at most the deadline and an
// eighth: enough to get the answer of a delivery that arrived at the same
// moment and ran to its deadline, and never so long that its caller hears
// nothing in time (ok false: nothing was done). budget is what is left of
// the deadline for the delivery's own PSP attempts, should it need any (the
// earlier delivery was refused, which is not remembered); at least an
// eighth of it, so that an attempt has time to reach the PSP.
func (k *keyLocks) lockForCall(key string, deadline time.Duration) (unlock func(), budget time.Duration, ok bool) {
	arrived := time.Now()
	grace := deadline / 8
	limit := time.NewTimer(deadline + grace)
	defer limit.Stop()
	if unlock, ok = k.lockUntil(key, limit.C); !ok {
		return nil, 0, false
	}
	return unlock, max(grace, min(deadline, deadline+grace-time.Since(arrived))), true
}

// inflight is the set of transactions some goroutine of this process is
// working on; a non-final transaction outside it is an orphan of a crash.
type inflight struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

// claim marks id as worked on; false if someone already is.
func (f *inflight) claim(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ids == nil {
		f.ids = make(map[string]struct{})
	}
	if _, ok := f.ids[id]; ok {
		return false
	}
	f.ids[id] = struct{}{}
	return true
}

func (f *inflight) release(id string) {
	f.mu.Lock()
	delete(f.ids, id)
	f.mu.Unlock()
}

func (f *inflight) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.ids[id]
	return ok
}
