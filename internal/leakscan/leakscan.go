// Package leakscan finds a private key's bytes in files: the foreign-key test plants a key the
// run did not create on every node, runs the suites, and then scans everything the run wrote
// (reports, diagnostics, temp dirs, logs) for any ChunkLen-byte run of the key in the forms
// it could take on the way: the PEM's base64 body, the raw DER, its hex (either case), and
// base64 of the whole PEM (at each of the three byte alignments, as when it is encoded inside
// a larger document such as a Secret's data). Chunks every key of the same kind shares (PEM
// armour, ASN.1 structure) are left out, so that the run's own keys never match.
//
// Findings name the file, the form and the offset, never the bytes.
package leakscan

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// ChunkLen is the length of the runs looked for.
const ChunkLen = 16

type chunk [ChunkLen]byte

// Needles are a key's chunks, each with the form it came from.
type Needles struct {
	chunks map[chunk]string
}

// Len is the number of distinct chunks.
func (n *Needles) Len() int { return len(n.chunks) }

// forms are the encodings of a PEM block (type, DER) the scan looks for, by name.
func forms(typ string, der []byte) map[string][]byte {
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	out := map[string][]byte{
		"PEM base64":  []byte(base64.StdEncoding.EncodeToString(der)),
		"raw DER":     der,
		"hex":         []byte(hex.EncodeToString(der)),
		"hex (upper)": bytes.ToUpper([]byte(hex.EncodeToString(der))),
	}
	for shift := range 3 {
		// base64 of the PEM behind shift other bytes (as inside a larger document), from the
		// first group holding none of them.
		padded := append(make([]byte, shift), pemBytes...)
		skip := 4 * ((shift + 2) / 3)
		out[fmt.Sprintf("base64 of the PEM (+%d)", shift)] = []byte(base64.StdEncoding.EncodeToString(padded)[skip:])
		out[fmt.Sprintf("base64url of the PEM (+%d)", shift)] = []byte(base64.URLEncoding.EncodeToString(padded)[skip:])
	}
	return out
}

// NewNeedles returns the chunks of the key in keyPEM that carry key material: each form's
// chunks that differ in at least half their bytes from the same chunk of a twin key (the same
// DER structure with fresh key material, see twin). PEM armour, ASN.1 headers and lengths,
// the algorithm and the public exponent are left out, so that other keys of the same kind
// and size (the run's own) never match.
func NewNeedles(keyPEM []byte) (*Needles, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block in the key file")
	}
	other, err := twin(block.Bytes)
	if err != nil {
		return nil, err
	}
	fs, tw := forms(block.Type, block.Bytes), forms(block.Type, other)
	names := make([]string, 0, len(fs))
	for name := range fs {
		names = append(names, name)
	}
	sort.Strings(names)
	n := &Needles{chunks: map[chunk]string{}}
	for _, name := range names {
		b, t := fs[name], tw[name]
		for i := 0; i+ChunkLen <= len(b) && i+ChunkLen <= len(t); i++ {
			diff := 0
			for j := range ChunkLen {
				if b[i+j] != t[i+j] {
					diff++
				}
			}
			if diff < ChunkLen/2 {
				continue
			}
			if _, ok := n.chunks[chunk(b[i:i+ChunkLen])]; !ok {
				n.chunks[chunk(b[i:i+ChunkLen])] = name
			}
		}
	}
	return n, nil
}

// Finding is one file holding a chunk of the key.
type Finding struct {
	Path   string
	Form   string
	Offset int64
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: the key's %s at byte %d", f.Path, f.Form, f.Offset)
}

// Reader reports the first chunk of the key in r (ok false when there is none).
func (n *Needles) Reader(r io.Reader) (form string, offset int64, ok bool, err error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var win chunk
	filled := 0
	var pos int64
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return "", 0, false, nil
		}
		if err != nil {
			return "", 0, false, err
		}
		pos++
		if filled < ChunkLen {
			win[filled] = b
			filled++
		} else {
			copy(win[:], win[1:])
			win[ChunkLen-1] = b
		}
		if filled == ChunkLen {
			if form, ok := n.chunks[win]; ok {
				return form, pos - ChunkLen, true, nil
			}
		}
	}
}

// Scan walks roots (files or directories; symlinks are not followed) and returns every
// regular file holding a chunk of the key, except the files and directories in skip (where
// the key itself is kept), and how many files it read. A file or directory below a root that
// vanishes before it is read (a running lab's temp files) held nothing that is still there:
// it is passed over; a root that does not exist is an error.
func (n *Needles) Scan(roots []string, skip ...string) ([]Finding, int, error) {
	skipped := map[string]bool{}
	for _, s := range skip {
		if abs, err := filepath.Abs(s); err == nil {
			skipped[abs] = true
		}
	}
	var found []Finding
	var errs []error
	files := 0
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p != root && errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				errs = append(errs, err)
				return nil
			}
			if abs, _ := filepath.Abs(p); skipped[abs] {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				errs = append(errs, err)
				return nil
			}
			files++
			defer f.Close()
			form, off, ok, err := n.Reader(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("failed to read %s: %w", p, err))
			}
			if ok {
				found = append(found, Finding{Path: p, Form: form, Offset: off})
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return found, files, errors.Join(errs...)
}
