package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
)

// The store takes its tables' pages out of the process's resident memory,
// and the data is all still there, read back through the same mappings.
func TestReleaseMappedTablePages(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for i := range n {
		put(t, s, newPayment(fmt.Sprint("rel", i)))
	}
	// Closing flushes the memtable into a table; reopening maps it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(Options{Dir: dir, GCInterval: -1}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	readAll := func() {
		t.Helper()
		for i := range n {
			if p := get(t, s, fmt.Sprint("rel", i)); p == nil || p.Amount != 1000 {
				t.Fatalf("payment rel%d: %+v", i, p)
			}
		}
	}
	readAll()
	before := residentTables(t, s.mappedDir)
	if before == 0 {
		t.Fatal("no table pages resident after reading every payment: the test measures nothing")
	}
	advised, err := s.releaseMapped()
	if err != nil {
		t.Fatal(err)
	}
	after := residentTables(t, s.mappedDir)
	t.Logf("table pages resident: %d KiB before, %d KiB after (%d KiB of mappings advised)", before>>10, after>>10, advised>>10)
	if advised == 0 || after > before/10 {
		t.Errorf("resident table pages went from %d to %d bytes: not released", before, after)
	}
	readAll()
	if err := s.Update(context.Background(), func(tx payment.Tx) error {
		return tx.PutPayment(newPayment("rel-after"))
	}); err != nil {
		t.Fatal(err)
	}
}

// residentTables sums the resident size of this process's mappings of the
// .sst files in dir, from /proc/self/smaps.
func residentTables(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	defer f.Close()
	var total int64
	inTable := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if _, _, path, ok := parseMapsLine(line); ok {
			inTable = filepath.Dir(path) == dir && strings.HasSuffix(path, ".sst")
			continue
		}
		if inTable && bytes.HasPrefix(line, []byte("Rss:")) {
			kb, err := strconv.ParseInt(string(bytes.Fields(line)[1]), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			total += kb << 10
		}
	}
	return total
}
