package static

import (
	"encoding/binary"
	"fmt"
	"math"

	"ward.dev/ward/masking/rules"
)

// COPY binary format (PostgreSQL documentation, "COPY", Binary Format): a
// header of an 11-byte signature, a 32-bit flags word and a 32-bit header
// extension length with the extension after it, then one tuple per row,
// and a 16-bit -1 as trailer. A tuple is a 16-bit field count followed by,
// for each field, a 32-bit length (-1 for NULL) and that many bytes. Every
// integer is big-endian.
//
// A database copy uses the binary format when the masker reads only text
// columns, whose binary form is their text, and passes every other value
// through unchanged. PostgreSQL then skips the text output and input
// functions of the kept columns.

const copySignature = "PGCOPY\n\xff\r\n\x00"

// binaryHeader is the header ward writes: no flags, no extension.
const binaryHeader = copySignature + "\x00\x00\x00\x00" + "\x00\x00\x00\x00"

// binaryTrailer ends the tuples.
const binaryTrailer = "\xff\xff"

// errBinaryFormat is ErrFormat for the binary format.
var errBinaryFormat = fmt.Errorf("%w: invalid COPY binary data", ErrFormat)

// parseBinaryHeader returns the length of the header at the start of data,
// or 0 when data does not hold all of it yet.
func parseBinaryHeader(data []byte) (int, error) {
	const fixed = len(copySignature) + 8
	if len(data) < len(copySignature) {
		return 0, nil
	}
	if string(data[:len(copySignature)]) != copySignature {
		return 0, fmt.Errorf("%w: invalid header signature", errBinaryFormat)
	}
	if len(data) < fixed {
		return 0, nil
	}
	flags := binary.BigEndian.Uint32(data[len(copySignature):])
	// Bits 0-15 mark incompatible format changes, and bit 16 adds an OID
	// column that no table has since PostgreSQL 12.
	if flags&0x1ffff != 0 {
		return 0, fmt.Errorf("%w: unsupported header flags %#x", errBinaryFormat, flags)
	}
	ext := binary.BigEndian.Uint32(data[len(copySignature)+4:])
	if ext > MaxLine {
		return 0, fmt.Errorf("%w: header extension of %d bytes", errBinaryFormat, ext)
	}
	if len(data) < fixed+int(ext) {
		return 0, nil
	}
	return fixed + int(ext), nil
}

// binaryTupleLen returns the length of the tuple at the start of data, 0
// when data does not hold all of it yet, or -1 for the trailer. The tuple
// must have the given number of fields.
func binaryTupleLen(data []byte, fields int) (int, error) {
	if len(data) < 2 {
		return 0, nil
	}
	n := int16(binary.BigEndian.Uint16(data))
	if n == -1 {
		return -1, nil
	}
	if int(n) != fields {
		return 0, errFieldCount(int(n), fields)
	}
	off := 2
	for range fields {
		if len(data) < off+4 {
			return 0, nil
		}
		size := int32(binary.BigEndian.Uint32(data[off:]))
		off += 4
		switch {
		case size == -1:
			continue
		case size < 0:
			return 0, fmt.Errorf("%w: field length %d", errBinaryFormat, size)
		case int64(off)+int64(size) > MaxLine:
			return 0, fmt.Errorf("%w: row longer than %d bytes", ErrFormat, MaxLine)
		}
		off += int(size)
		if len(data) < off {
			return 0, nil
		}
	}
	return off, nil
}

// decodeBinaryTuple splits the tuple at the start of in into fields,
// reusing row, and returns the rest of in. in holds whole tuples only, as
// binaryTupleLen checked them.
func decodeBinaryTuple(in string, row []rules.Field) ([]rules.Field, string, error) {
	if len(in) < 2 {
		return nil, "", fmt.Errorf("%w: truncated tuple", errBinaryFormat)
	}
	n := int(int16(uint16(in[0])<<8 | uint16(in[1])))
	in = in[2:]
	row = row[:0]
	for range max(n, 0) {
		if len(in) < 4 {
			return nil, "", fmt.Errorf("%w: truncated tuple", errBinaryFormat)
		}
		size := int32(uint32(in[0])<<24 | uint32(in[1])<<16 | uint32(in[2])<<8 | uint32(in[3]))
		in = in[4:]
		if size == -1 {
			row = append(row, rules.Field{Null: true})
			continue
		}
		if size < 0 || int(size) > len(in) {
			return nil, "", fmt.Errorf("%w: field length %d", errBinaryFormat, size)
		}
		row = append(row, rules.Field{Text: in[:size]})
		in = in[size:]
	}
	return row, in, nil
}

// appendBinaryTuple appends row as one binary tuple.
func appendBinaryTuple(dst []byte, row []rules.Field) ([]byte, error) {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(row)))
	for _, f := range row {
		if f.Null {
			dst = binary.BigEndian.AppendUint32(dst, math.MaxUint32)
			continue
		}
		if len(f.Text) > MaxLine {
			return dst, fmt.Errorf("%w: value longer than %d bytes", ErrFormat, MaxLine)
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.Text)))
		dst = append(dst, f.Text...)
	}
	return dst, nil
}
