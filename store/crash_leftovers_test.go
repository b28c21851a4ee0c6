package store

import (
	"os"
	"path/filepath"
	"testing"
)

// A kill -9 between Badger creating a memtable's log file and sizing it
// leaves an empty .mem file, on which Badger's Open fails
// (dgraph-io/badger#2207). The fault suite's kill -9 scenario hit it in
// CI: Caddy's start after the crash failed.
func TestOpensAfterCrashLeftAnEmptyMemtableLog(t *testing.T) {
	dir := closedStoreWithOnePayment(t)
	mems, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	// The crash's file is the one Badger would have created next.
	empty := filepath.Join(dir, "00099.mem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopen with an empty memtable log beside %d others: %v", len(mems), err)
	}
	defer s.Close()
	if got := get(t, s, "pay1"); got.SourceToken != "src-pay1" {
		t.Errorf("payment after reopen: %+v", got)
	}
	put(t, s, newPayment("pay2"))
	if got := get(t, s, "pay2"); got.SourceToken != "src-pay2" {
		t.Errorf("payment written after reopen: %+v", got)
	}
}

// The clean-up must never touch a directory another process has open: the
// empty log there may be the memtable that process has just created.
func TestLeavesEmptyMemtableLogOfARunningStore(t *testing.T) {
	_, dir := openTemp(t)
	empty := filepath.Join(dir, "00099.mem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(Options{Dir: dir}); err == nil {
		s2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	if _, err := os.Stat(empty); err != nil {
		t.Errorf("the running store's empty memtable log: %v", err)
	}
}

// An empty value-log file, left the same way, is one Badger sizes itself.
func TestOpensAfterCrashLeftAnEmptyValueLog(t *testing.T) {
	dir := closedStoreWithOnePayment(t)
	if err := os.WriteFile(filepath.Join(dir, "000099.vlog"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopen with an empty value log: %v", err)
	}
	defer s.Close()
	if got := get(t, s, "pay1"); got.SourceToken != "src-pay1" {
		t.Errorf("payment after reopen: %+v", got)
	}
}

// closedStoreWithOnePayment returns the directory of a closed store that
// holds payment "pay1".
func closedStoreWithOnePayment(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, newPayment("pay1"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}
