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
