package input

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readAll(t *testing.T, r *Reader) []string {
	t.Helper()
	var out []string
	for {
		l, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(l))
	}
}

func write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLines(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	tests := []struct {
		name    string
		data    string
		want    []string
		skipped int64
	}{
		{"plain", "a\nb\n", []string{"a", "b"}, 0},
		{"crlf", "a\r\nb\r\n", []string{"a", "b"}, 0},
		{"no final newline", "a\nb", []string{"a", "b"}, 0},
		{"empty", "", nil, 0},
		{"empty lines", "\n\n", []string{"", ""}, 0},
		{"1 MiB line skipped", "a\n" + long + "\nb\n", []string{"a", "b"}, 1},
		{"over MaxLine within buffer", "a\n" + strings.Repeat("y", MaxLine+1) + "\nb\n", []string{"a", "b"}, 1},
		{"binary", "\x00\x01\xff\n\x1f\n", []string{"\x00\x01\xff", "\x1f"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Open(write(t, "log", []byte(tt.data)))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := readAll(t, r)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
			if r.Skipped != tt.skipped {
				t.Errorf("skipped = %d, want %d", r.Skipped, tt.skipped)
			}
			if r.Offset() != int64(len(tt.data)) {
				t.Errorf("offset = %d, want %d", r.Offset(), len(tt.data))
			}
		})
	}
}

func TestGzip(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("one\ntwo\nthree\n"))
	zw.Close()
	// The name does not say gzip: the magic does.
	p := write(t, "mail.log.2", buf.Bytes())
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); strings.Join(got, ",") != "one,two,three" {
		t.Errorf("lines = %q", got)
	}
	fp := r.ID.Fingerprint
	r.Close()

	r, _ = Open(p)
	defer r.Close()
	if ok, err := r.Resume(fp, 4, 1); !ok || err != nil {
		t.Fatalf("resume = %v, %v", ok, err)
	}
	if got := readAll(t, r); strings.Join(got, ",") != "two,three" || r.Line() != 3 {
		t.Errorf("after resume: %q, line %d", got, r.Line())
	}
}

func TestResume(t *testing.T) {
	p := write(t, "log", []byte("one\ntwo\nthree\n"))
	r, _ := Open(p)
	r.Next()
	fp, off, line := r.ID.Fingerprint, r.Offset(), r.Line()
	r.Close()

	r, _ = Open(p)
	if ok, _ := r.Resume(fp, off, line); !ok {
		t.Fatal("did not resume the same file")
	}
	if got := readAll(t, r); strings.Join(got, ",") != "two,three" || r.Line() != 3 {
		t.Errorf("after resume: %q, line %d", got, r.Line())
	}
	r.Close()

	// Another file under the same name starts from the beginning.
	os.WriteFile(p, []byte("new\nfile\n"), 0o644)
	r, _ = Open(p)
	if ok, _ := r.Resume(fp, off, line); ok {
		t.Error("resumed a different file")
	}
	if got := readAll(t, r); strings.Join(got, ",") != "new,file" {
		t.Errorf("lines = %q", got)
	}
	r.Close()

	// A file that grew past the fingerprint's length is still the same file.
	small := write(t, "small", []byte("a\n"))
	r, _ = Open(small)
	r.Next()
	fp, off, line = r.ID.Fingerprint, r.Offset(), r.Line()
	r.Close()
	os.WriteFile(small, []byte("a\n"+strings.Repeat("b\n", 2000)), 0o644)
	r, _ = Open(small)
	defer r.Close()
	if ok, _ := r.Resume(fp, off, line); !ok {
		t.Error("did not resume a file that grew")
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("err = %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: err = %v", err)
	}
}

// TestBeforeCompressed: the lines before an offset are read again from a
// compressed file too, where offsets count decompressed bytes.
func TestBeforeCompressed(t *testing.T) {
	var plain bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(&plain, "line %03d\n", i)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	for name, data := range map[string][]byte{"plain": plain.Bytes(), "gzip": gz.Bytes()} {
		path := write(t, name+".log", data)
		var got []string
		if err := Before(path, 9*50, 9*3, func(l []byte) { got = append(got, string(l)) }); err != nil {
			t.Fatal(err)
		}
		if want := []string{"line 047", "line 048", "line 049"}; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
