package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
)

var (
	_ payment.Store  = (*Store)(nil)
	_ payment.Outbox = (*Store)(nil)
)

// Options configures Open.
type Options struct {
	// Dir is Badger's directory; it is created if missing. Required.
	Dir string
	// Logger receives Badger's warnings and errors and the store's own. Nil
	// means no logging.
	Logger *zap.Logger
	// GCInterval is how often value-log garbage collection runs. Zero means
	// 10 minutes; negative disables it.
	GCInterval time.Duration
}

const defaultGCInterval = 10 * time.Minute

// Store is a Badger-backed payment.Store and payment.Outbox. It is safe for
// concurrent use.
type Store struct {
	dir      string
	db       *badger.DB
	seq      *badger.Sequence
	log      *zap.Logger
	enqueued chan struct{}

	headsMu     sync.Mutex
	headsCursor []byte // see Heads

	// Group commit (see groupcommit.go).
	commits        chan *commitReq
	closing        chan struct{}
	batcherDone    chan struct{}
	groupCommits   atomic.Int64
	groupedUpdates atomic.Int64

	// See release.go. mappedDir is dir as /proc/self/maps names it:
	// absolute, symbolic links resolved.
	mappedDir   string
	releaseDone chan struct{}

	stopGC chan struct{}
	gcDone chan struct{}
	// Readers and Updates' functions use Badger outside the batcher;
	// Close waits for them (see acquire).
	users     atomic.Int64
	shut      atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the store in opts.Dir. Only one Store may have a
// directory open at a time, in this process or any other.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: Options.Dir is required")
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if err := removeEmptyLogs(opts.Dir, log); err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", opts.Dir, err)
	}
	db, err := badger.Open(badgerOptions(opts.Dir, log))
	if err != nil {
		// Badger flattens the lock error into a string, so there is no
		// error value to match.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("storage %s is in use by another process (is another Caddy running with the same storage?)", opts.Dir)
		}
		return nil, fmt.Errorf("store: opening %s: %w", opts.Dir, err)
	}
	if err := checkSchema(db, opts.Dir); err != nil {
		db.Close()
		return nil, err
	}
	// A wide lease keeps Enqueue from writing the sequence key on nearly
	// every call; a crash only skips the rest of a lease, and Seq needs to
	// increase, not to be dense.
	seq, err := db.GetSequence(keySeq, 1000)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: outbox sequence: %w", err)
	}
	s := &Store{
		dir:      opts.Dir,
		db:       db,
		seq:      seq,
		log:      log,
		enqueued: make(chan struct{}, 1),

		commits:     make(chan *commitReq, maxBatch),
		closing:     make(chan struct{}),
		batcherDone: make(chan struct{}),
	}
	go s.batcher()
	s.mappedDir = mappedPath(opts.Dir)
	s.releaseDone = make(chan struct{})
	go s.releaseLoop()
	interval := opts.GCInterval
	if interval == 0 {
		interval = defaultGCInterval
	}
	if interval > 0 {
		s.stopGC = make(chan struct{})
		s.gcDone = make(chan struct{})
		go s.gcLoop(interval)
	}
	return s, nil
}

// badgerOptions sizes Badger for a plugin inside a web server, not a
// database server: a payment gateway writes a few small records per
// request, so the defaults (64 MiB memtables x5, a 256 MiB block cache,
// 1 GiB value-log files) would be mostly idle memory and disk. Each choice
// below was measured with the load benchmark; see bench/RESULTS.md ("Store
// footprint" and "Session 5").
func badgerOptions(dir string, log *zap.Logger) badger.Options {
	opts := badger.DefaultOptions(dir).
		// A commit is acknowledged to a platform as done: it must survive
		// a crash or power loss, so every commit is fsynced.
		WithSyncWrites(true).
		// Two 4 MiB memtables bound write-buffer memory to about 10 MiB
		// of arenas; the table built from a full memtable (its builder
		// holds it all in memory) is 4 MiB rather than 8. This also caps
		// one transaction at about 600 KiB (15% of a memtable), above
		// what group commit puts in one (maxBatchBytes).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		// Tables are not compressed (below), so there are no decompressed
		// blocks worth caching: a block is read straight from the table's
		// mapping. A non-zero index cache keeps table indexes out of
		// resident memory.
		WithBlockCacheSize(0).
		WithIndexCacheSize(4 << 20).
		// With SyncWrites, Badger msyncs the current value-log file's
		// whole mapping (twice the file size) on every commit, even when
		// nothing went to the value log: with 64 MiB files that walk of a
		// 128 MiB mapping was about a tenth of Caddy's CPU in the sync
		// benchmark. Values rarely go there (see ValueThreshold), so the
		// smallest file Badger allows costs nothing.
		WithValueLogFileSize(1 << 20).
		// Values stay in the LSM tree unless they are unusually large. A
		// payment is rewritten several times in its life (begin and finish
		// of each operation); in the value log every version stayed on
		// disk until value-log GC, about 6.5 KB a payment, while compaction
		// keeps only the newest version.
		WithValueThreshold(64 << 10).
		// Every SSTable is at most 1 MiB, at every level. A table builder
		// holds its whole table in memory, Badger runs several builders
		// at once during a compaction and keeps up to eight spent
		// builders' buffers for reuse; with the default doubling per
		// level those buffers grew with the store (460 MiB of heap at
		// 200,000 payments).
		WithBaseTableSize(1 << 20).
		// Compressing each block allocates its compressed copy from the
		// builder's buffers: 152 MiB of the 241 MiB of Go heap held by
		// Badger during a growth run at 100,000 payments. Uncompressed,
		// the store takes about 4 KB of disk a payment instead of 2.5 KB,
		// and Caddy's anonymous memory at 100,000 payments fell from 405
		// to 171 MiB.
		WithCompression(options.None).
		// Two is Badger's minimum for L0 to keep up; more would only
		// compete with request handling for CPU.
		WithNumCompactors(2).
		WithLogger(badgerLogger{log.Named("badger").Sugar()})
	opts.TableSizeMultiplier = 1
	return opts
}

// Close stops value-log GC and closes Badger. Later calls return the first
// call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		// Updates handed to the batcher are finished first: they may
		// already be acknowledged to wait only for their fsync.
		close(s.closing)
		<-s.batcherDone
		<-s.releaseDone
		s.shutOut()
		if s.stopGC != nil {
			close(s.stopGC)
			<-s.gcDone
		}
		// Releasing returns the unused part of the lease, so Seq stays
		// compact across clean restarts.
		s.closeErr = errors.Join(s.seq.Release(), s.db.Close())
	})
	return s.closeErr
}

// mappedPath returns dir as the kernel names it in /proc/self/maps, or dir
// itself if it cannot be resolved (then no mapping matches and nothing is
// released).
func mappedPath(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}

// acquire lets the caller use Badger until release, or refuses once Close
// has begun: Badger does not refuse work on a closed database, it fails
// later, or panics. It never blocks, so a View inside an Update's function
// is fine.
func (s *Store) acquire() error {
	s.users.Add(1)
	if s.shut.Load() {
		s.users.Add(-1)
		return badger.ErrDBClosed
	}
	return nil
}

func (s *Store) release() { s.users.Add(-1) }

// shutOut refuses new users and waits for the current ones. With both sides
// using sequentially consistent atomics, a user either sees shut and backs
// out, or is counted before Close looks.
func (s *Store) shutOut() {
	s.shut.Store(true)
	for s.users.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
}
