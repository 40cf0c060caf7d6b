package pgproxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

func encodeQuery(t *testing.T, sql string) []byte {
	t.Helper()
	b, err := (&pgproto3.Query{String: sql}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// relayQueries relays the Query messages the Backend over in receives,
// sending each text on got, until the stream ends.
func relayQueries(in *sockReader, be *pgproto3.Backend, got chan<- string) error {
	return in.relay(func() error {
		msg, err := be.Receive()
		if err != nil {
			return err
		}
		q, ok := msg.(*pgproto3.Query)
		if !ok {
			return errors.New("not a query")
		}
		got <- q.String
		return nil
	})
}

func TestSockReaderRelay(t *testing.T) {
	client, server := tcpPair(t)
	in := newSockReader(server, server)
	if !in.useSocket() {
		t.Fatal("useSocket() = false for a TCP connection, want true")
	}
	be := pgproto3.NewBackend(in, server)
	got := make(chan string, 8)
	done := make(chan error, 1)
	go func() { done <- relayQueries(in, be, got) }()

	// One message in two writes: the relay waits in the middle of it.
	first := encodeQuery(t, "SELECT 1")
	if _, err := client.Write(first[:7]); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write(first[7:]); err != nil {
		t.Fatal(err)
	}
	if q := <-got; q != "SELECT 1" {
		t.Errorf("first query = %q, want SELECT 1", q)
	}

	// Two messages in one write: both are relayed before the next wait.
	two := append(encodeQuery(t, "SELECT 2"), encodeQuery(t, "SELECT 3")...)
	if _, err := client.Write(two); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SELECT 2", "SELECT 3"} {
		if q := <-got; q != want {
			t.Errorf("query = %q, want %q", q, want)
		}
	}

	// A message larger than the Backend's read buffer.
	long := "SELECT '" + string(bytes.Repeat([]byte("x"), 100000)) + "'"
	if _, err := client.Write(encodeQuery(t, long)); err != nil {
		t.Fatal(err)
	}
	if q := <-got; q != long {
		t.Errorf("long query has %d bytes, want %d", len(q), len(long))
	}

	client.Close()
	if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("relay after the client closed = %v, want %v", err, io.ErrUnexpectedEOF)
	}
}

func TestSockReaderCloseEndsRelay(t *testing.T) {
	_, server := tcpPair(t)
	in := newSockReader(server, server)
	if !in.useSocket() {
		t.Fatal("useSocket() = false for a TCP connection, want true")
	}
	be := pgproto3.NewBackend(in, server)
	done := make(chan error, 1)
	go func() { done <- relayQueries(in, be, make(chan string)) }()

	server.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("relay after Close = %v, want %v", err, net.ErrClosed)
	}
}

func TestSockReaderRelayDone(t *testing.T) {
	client, server := tcpPair(t)
	in := newSockReader(server, server)
	in.useSocket()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	err := in.relay(func() error {
		var b [1]byte
		if _, err := in.Read(b[:]); err != nil {
			return err
		}
		return errRelayDone
	})
	if err != nil {
		t.Errorf("relay ended by errRelayDone = %v, want nil", err)
	}
}

func TestSockReaderPipe(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	in := newSockReader(server, server)
	if in.useSocket() {
		t.Fatal("useSocket() = true for net.Pipe, want false")
	}
	be := pgproto3.NewBackend(in, server)
	got := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- relayQueries(in, be, got) }()

	if _, err := client.Write(encodeQuery(t, "SELECT 1")); err != nil {
		t.Fatal(err)
	}
	if q := <-got; q != "SELECT 1" {
		t.Errorf("query = %q, want SELECT 1", q)
	}
	client.Close()
	if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("relay after the client closed = %v, want %v", err, io.ErrUnexpectedEOF)
	}
}

// fakeBGReader replaces pgconn's background reader in tests. It returns
// its buffered data first and then reads conn.
type fakeBGReader struct {
	status   int32
	buffered []byte
	conn     net.Conn
}

func (f *fakeBGReader) Status() int32 { return f.status }

func (f *fakeBGReader) Read(p []byte) (int, error) {
	if len(f.buffered) > 0 {
		n := copy(p, f.buffered)
		f.buffered = f.buffered[n:]
		return n, nil
	}
	return f.conn.Read(p)
}

func TestSockReaderTakesBuffered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int32
		socket bool
	}{
		{"stopped", bgReaderStopped, true},
		{"running", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			bg := &fakeBGReader{status: tc.status, buffered: []byte("buffered,"), conn: server}
			in := newSockReader(bg, server)
			if got := in.useSocket(); got != tc.socket {
				t.Fatalf("useSocket() = %v, want %v", got, tc.socket)
			}
			if _, err := client.Write([]byte("socket")); err != nil {
				t.Fatal(err)
			}
			client.Close()

			var out []byte
			err := in.relay(func() error {
				var b [4]byte
				n, err := in.Read(b[:])
				out = append(out, b[:n]...)
				return err
			})
			if !errors.Is(err, io.EOF) {
				t.Errorf("relay = %v, want %v", err, io.EOF)
			}
			if string(out) != "buffered,socket" {
				t.Errorf("read %q, want %q", out, "buffered,socket")
			}
		})
	}
}

func TestSockWriterFullBuffer(t *testing.T) {
	client, server := tcpPair(t)
	w := newSockWriter(server)
	if w.rc == nil {
		t.Fatal("newSockWriter(TCP connection) writes through conn.Write, want raw writes")
	}
	// With socket buffers of 256 KiB, 8 MiB makes the writer wait for
	// the reader.
	if err := server.(*net.TCPConn).SetWriteBuffer(256 << 10); err != nil {
		t.Fatal(err)
	}
	if err := client.(*net.TCPConn).SetReadBuffer(256 << 10); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<19)
	want := sha256.Sum256(data)
	done := make(chan error, 1)
	go func() {
		n, err := w.Write(data)
		if err == nil && n != len(data) {
			err = io.ErrShortWrite
		}
		server.Close()
		done <- err
	}()

	h := sha256.New()
	n, err := io.Copy(h, client)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write = %v", err)
	}
	if n != int64(len(data)) {
		t.Errorf("read %d bytes, want %d", n, len(data))
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Error("data read differs from data written")
	}
}

func TestSockWriterClosed(t *testing.T) {
	_, server := tcpPair(t)
	w := newSockWriter(server)
	server.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want %v", err, net.ErrClosed)
	}
}
