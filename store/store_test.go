package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
)

func TestDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, newPayment("pay1"))
	m := msg("pay1", "hello")
	enqueue(t, s, m)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := get(t, s, "pay1"); got.SourceToken != "src-pay1" {
		t.Errorf("reopened payment: %+v", got)
	}
	heads, err := s.Heads(10)
	if err != nil || len(heads) != 1 || string(heads[0].Body) != "hello" || heads[0].Seq != m.Seq {
		t.Fatalf("reopened heads: %+v, %v", heads, err)
	}
	// Seq keeps increasing across restarts.
	m2 := msg("pay1", "again")
	enqueue(t, s, m2)
	if m2.Seq <= m.Seq {
		t.Errorf("Seq went from %d to %d across a reopen", m.Seq, m2.Seq)
	}
}

func TestSecondOpenFails(t *testing.T) {
	_, dir := openTemp(t)
	s2, err := Open(Options{Dir: dir})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	want := fmt.Sprintf("storage %s is in use by another process (is another Caddy running with the same storage?)", dir)
	if err.Error() != want {
		t.Fatalf("got %q\nwant %q", err, want)
	}
}

func TestUnknownSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(txn *badger.Txn) error { return txn.Set(keySchema, []byte("99")) })
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(Options{Dir: dir})
	if err == nil {
		s.Close()
		t.Fatal("opened a store with schema version 99")
	}
	if !strings.Contains(err.Error(), `schema version "99"`) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("unclear error: %v", err)
	}

	// The refused store must have been closed: the directory is free.
	if err := badgerOpenClose(dir); err != nil {
		t.Fatalf("directory still locked after a refused Open: %v", err)
	}
}

func TestForeignDataRefused(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("x"), []byte("y")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(Options{Dir: dir}); err == nil {
		s.Close()
		t.Fatal("opened a Badger directory with no schema version")
	}
}

func badgerOpenClose(dir string) error {
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		return err
	}
	return db.Close()
}

func TestClosedStoreRefuses(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Update(context.Background(), func(payment.Tx) error { return nil }); err == nil {
		t.Error("Update on a closed store succeeded")
	}
	if _, err := s.Heads(1); err == nil {
		t.Error("Heads on a closed store succeeded")
	}
}

func TestGCLoopStopsOnClose(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		p := newPayment(fmt.Sprint("p", i))
		p.SourceToken = strings.Repeat("x", 2000) // into the value log
		put(t, s, p)
	}
	time.Sleep(5 * time.Millisecond) // let a GC round run
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDiskUsage(t *testing.T) {
	s, _ := openTemp(t)
	for i := range 50 {
		p := newPayment(fmt.Sprint("p", i))
		p.SourceToken = strings.Repeat("x", 2000)
		put(t, s, p)
	}
	// Fresh (Badger's own figure is refreshed once a minute), and not
	// the preallocated 128 MiB of the active value-log file.
	lsm, vlog := s.DiskUsage()
	if vlog < 50*2000 || vlog > 32<<20 || lsm < 0 {
		t.Errorf("DiskUsage = %d, %d", lsm, vlog)
	}
}

// A store written by an earlier paybridge, with Badger's options of then
// (Snappy-compressed tables, 8 MiB memtables, 64 MiB value-log files, a
// block cache), opens with today's options and reads back every payment:
// Badger records each table's compression in its manifest.
func TestOpensStoreWrittenWithEarlierOptions(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // writes the schema key
		t.Fatal(err)
	}
	old := badgerOptions(dir, zap.NewNop()).
		WithCompression(options.Snappy).
		WithMemTableSize(8 << 20).
		WithValueLogFileSize(64 << 20).
		WithBlockCacheSize(8 << 20).
		WithBaseTableSize(2 << 20)
	db, err := badger.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		p := newPayment(fmt.Sprint("old", i))
		if err := db.Update(func(txn *badger.Txn) error { return setJSON(txn, paymentKey(p.ID), p) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil { // flushes the memtable into a Snappy table
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		if p := get(t, s, fmt.Sprint("old", i)); p == nil || p.Amount != 1000 {
			t.Fatalf("payment old%d after the upgrade: %+v", i, p)
		}
	}
}
