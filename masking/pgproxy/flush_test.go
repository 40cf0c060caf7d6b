package pgproxy

import (
	"bytes"
	"math"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestSessionFlushKeepsBuffer(t *testing.T) {
	var out bytes.Buffer
	s := &session{out: &out}

	s.send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	s.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := s.flush(); err != nil {
		t.Fatalf("flush() = %v", err)
	}
	want, _ := (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(nil)
	want, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(want)
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("flush() wrote %q, want %q", out.Bytes(), want)
	}
	if len(s.wbuf) != 0 || cap(s.wbuf) == 0 {
		t.Errorf("after a small flush wbuf has len %d, cap %d; want len 0 and the buffer kept", len(s.wbuf), cap(s.wbuf))
	}

	s.send(&pgproto3.DataRow{Values: [][]byte{make([]byte, 2*maxKeptWriteBuffer)}})
	if err := s.flush(); err != nil {
		t.Fatalf("flush() = %v", err)
	}
	if cap(s.wbuf) > maxKeptWriteBuffer {
		t.Errorf("after a large flush wbuf has cap %d, want at most %d", cap(s.wbuf), maxKeptWriteBuffer)
	}
}

func TestSessionFlushEncodeError(t *testing.T) {
	var out bytes.Buffer
	s := &session{out: &out}

	s.send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	s.send(&pgproto3.DataRow{Values: make([][]byte, math.MaxUint16+1)})
	s.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := s.flush(); err == nil {
		t.Error("flush() after a message with too many values = nil, want an error")
	}
	if out.Len() != 0 {
		t.Errorf("flush() after an encode error wrote %d bytes, want 0", out.Len())
	}

	s.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := s.flush(); err != nil {
		t.Errorf("flush() after the error was returned = %v, want nil", err)
	}
	if out.Len() != 6 {
		t.Errorf("flush() wrote %d bytes, want 6", out.Len())
	}
}
