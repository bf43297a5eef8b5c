package leakscan

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// twin returns a copy of der (a DER private key: PKCS#1, PKCS#8, SEC1) with the same
// structure, every length and tag equal, but fresh random content in every INTEGER longer
// than 8 bytes (the key material): what der shares with its twin is structure every key of
// its kind and size shares, not secret. Nested DER inside an OCTET STRING (PKCS#8's private
// key) is followed. It fails when der holds no such INTEGER.
func twin(der []byte) ([]byte, error) {
	out := append([]byte(nil), der...)
	n, err := randomizeTLVs(out)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("no key material (no INTEGER longer than 8 bytes) in the DER")
	}
	return out, nil
}

// randomizeTLVs walks the TLVs filling b exactly and randomizes the long INTEGERs in place;
// it returns how many it changed.
func randomizeTLVs(b []byte) (int, error) {
	changed := 0
	for len(b) > 0 {
		tag, content, rest, err := tlv(b)
		if err != nil {
			return changed, err
		}
		switch {
		case tag == 0x30 || tag == 0xa0 || tag == 0xa1: // SEQUENCE, SEC1's [0] and [1]
			n, err := randomizeTLVs(content)
			if err != nil {
				return changed, err
			}
			changed += n
		case tag == 0x04: // OCTET STRING: PKCS#8's nested key when it parses as DER
			if n, err := randomizeTLVs(append([]byte(nil), content...)); err == nil && n > 0 {
				n, _ = randomizeTLVs(content)
				changed += n
			}
		case tag == 0x02 && len(content) > 8:
			if err := randomizeInteger(content); err != nil {
				return changed, err
			}
			changed++
		}
		b = rest
	}
	return changed, nil
}

// randomizeInteger fills a positive DER INTEGER's content with random bytes of the same
// encoding: a leading 0x00 stays, and the first significant byte keeps its high bit (so the
// encoding stays minimal and its length unchanged).
func randomizeInteger(c []byte) error {
	start := 0
	if c[0] == 0x00 {
		start = 1
	}
	high := c[start] & 0x80
	if _, err := rand.Read(c[start:]); err != nil {
		return fmt.Errorf("failed to read random bytes: %w", err)
	}
	c[start] = c[start]&0x7f | high
	if c[start] == 0 {
		c[start] = 1
	}
	return nil
}

// tlv splits one DER TLV off b (single-byte tags; definite lengths).
func tlv(b []byte) (tag byte, content, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errors.New("truncated DER")
	}
	tag, l := b[0], int(b[1])
	hdr := 2
	if l&0x80 != 0 {
		n := l & 0x7f
		if n == 0 || n > 3 || len(b) < 2+n {
			return 0, nil, nil, errors.New("unsupported DER length")
		}
		l = 0
		for _, x := range b[2 : 2+n] {
			l = l<<8 | int(x)
		}
		hdr += n
	}
	if len(b) < hdr+l {
		return 0, nil, nil, errors.New("truncated DER")
	}
	return tag, b[hdr : hdr+l], b[hdr+l:], nil
}
