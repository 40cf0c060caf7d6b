package pgproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// errWouldBlock means the socket had no data when a relay step read it.
// The relay then waits until the socket is readable and repeats the step.
// pgproto3's Receive keeps a partly read message across such an error.
var errWouldBlock = errors.New("pgproxy: no data ready on the socket")

// readAhead is the size of a socket read: the reader keeps what its
// caller did not ask for yet.
const readAhead = 32 << 10

var aheadPool = sync.Pool{New: func() any {
	b := make([]byte, readAhead)
	return &b
}}

// errRelayDone ends a relay loop without an error.
var errRelayDone = errors.New("pgproxy: relay done")

// maxStepsPerWait bounds the relay steps run in one raw read of the
// socket. Leaving the raw read now and then lets a relay that never waits
// see that the connection was closed.
const maxStepsPerWait = 256

// bgReaderStopped is the status a pgconn background reader reports once
// it has stopped (bgreader.StatusStopped in pgx v5.13).
const bgReaderStopped = 0

// sockReader is the io.Reader beneath one connection's pgproto3 Backend or
// Frontend. Outside relay it reads through src. Inside relay, when the
// connection is a plain socket, it calls read(2) on the socket itself, and
// a read that finds no data makes relay wait for readiness. A short read
// is not taken to mean the socket is empty: an end of file or a reset that
// arrived with the last data would then wait for a readiness event that
// edge-triggered epoll has already delivered. A sockReader is not safe for
// concurrent use.
type sockReader struct {
	src  io.Reader
	conn net.Conn
	rc   syscall.RawConn // nil until useSocket succeeds

	// pending contains data taken out of src before socket reads began,
	// or read from the socket ahead of the caller, and pendingErr the error
	// src returned after that data.
	pending    []byte
	pendingErr error
	// ahead receives socket reads, which ask for readAhead bytes so that
	// one system call takes many small messages. It comes from aheadPool
	// and goes back once the socket has no data, so idle sessions hold
	// none.
	ahead *[]byte

	fd  int
	raw bool // set inside relay's raw read, where Read calls read(2) on fd

	// delivered counts the bytes Read has returned.
	delivered int64
}

func newSockReader(src io.Reader, conn net.Conn) *sockReader {
	return &sockReader{src: src, conn: conn}
}

// useSocket lets relay read the socket directly. It returns false and
// leaves reads going through src when conn is not a plain socket (a TLS
// connection, for one) or src may still hold data of its own.
func (r *sockReader) useSocket() bool {
	sc, ok := r.conn.(syscall.Conn)
	if !ok {
		return false
	}
	if r.src != r.conn && !r.takeBuffered() {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	r.rc = rc
	return true
}

// takeBuffered moves what pgconn's stopped background reader has buffered
// into pending, so that no data is skipped once reads bypass it. With a
// read deadline in the past, a read of the socket itself returns at once
// without taking any data.
func (r *sockReader) takeBuffered() bool {
	bg, ok := r.src.(interface{ Status() int32 })
	if !ok || bg.Status() != bgReaderStopped {
		return false
	}
	if err := r.conn.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return false
	}
	defer r.conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 4096)
	for {
		n, err := r.src.Read(buf)
		r.pending = append(r.pending, buf[:n]...)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return true
			}
			r.pendingErr = err
			return false
		}
	}
}

func (r *sockReader) Read(p []byte) (int, error) {
	n, err := r.read(p)
	r.delivered += int64(n)
	return n, err
}

func (r *sockReader) read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	if r.pendingErr != nil {
		err := r.pendingErr
		r.pendingErr = nil
		return 0, err
	}
	if !r.raw {
		return r.src.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	dst := p
	if len(p) < readAhead {
		if r.ahead == nil {
			r.ahead = aheadPool.Get().(*[]byte)
		}
		dst = *r.ahead
	}
	n, err := readNoIntr(r.fd, dst)
	if n <= 0 && r.ahead != nil {
		aheadPool.Put(r.ahead)
		r.ahead = nil
	}
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return 0, errWouldBlock
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: r.conn.LocalAddr().Network(), Source: r.conn.LocalAddr(),
			Addr: r.conn.RemoteAddr(), Err: os.NewSyscallError("read", err)}
	case n == 0:
		return 0, io.EOF
	}
	if len(p) < readAhead {
		r.pending = (*r.ahead)[:n]
		n = copy(p, r.pending)
		r.pending = r.pending[n:]
	}
	return n, nil
}

// buffered returns how many bytes the reader holds that its caller has
// not read yet.
func (r *sockReader) buffered() int {
	if r == nil {
		return 0
	}
	return len(r.pending)
}

// readNoIntr reads the non-blocking socket fd into p, which is not empty.
// It calls read(2) as a raw system call, which does not block on such a
// socket. So the goroutine keeps its P, and the runtime skips the
// scheduler work that syscall.Read does around each call.
func readNoIntr(fd int, p []byte) (int, error) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		default:
			return 0, errno
		}
	}
}

// sockWriter is the io.Writer beneath one connection's pgproto3 Backend or
// Frontend. On a plain socket it calls write(2) as a raw system call and
// waits through the poller while the socket buffer is full. It is safe
// for concurrent use as far as conn is.
type sockWriter struct {
	conn net.Conn
	rc   syscall.RawConn // nil: writes go through conn.Write
}

func newSockWriter(conn net.Conn) *sockWriter {
	w := &sockWriter{conn: conn}
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.rc = rc
		}
	}
	return w
}

func (w *sockWriter) Write(p []byte) (int, error) {
	if w.rc == nil {
		return w.conn.Write(p)
	}
	written := 0
	var errno syscall.Errno
	err := w.rc.Write(func(fd uintptr) bool {
		for written < len(p) {
			n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[written])), uintptr(len(p)-written))
			switch e {
			case 0:
				written += int(n)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if errno != 0 {
		err = os.NewSyscallError("write", errno)
	}
	if err != nil {
		return written, &net.OpError{Op: "write", Net: w.conn.LocalAddr().Network(), Source: w.conn.LocalAddr(),
			Addr: w.conn.RemoteAddr(), Err: err}
	}
	return written, nil
}

// relay calls step until it returns an error, and returns that error, or
// nil for errRelayDone. When step returns errWouldBlock, relay waits until
// the socket is readable and calls step again. A nil r relays without
// socket reads.
func (r *sockReader) relay(step func() error) error { return r.relayIdle(step, nil) }

// relayIdle is relay that also calls idle, when not nil, each time the
// socket has no data, before it waits.
func (r *sockReader) relayIdle(step, idle func() error) error {
	err := r.loop(step, idle)
	if errors.Is(err, errRelayDone) {
		return nil
	}
	return err
}

// waitsIdle reports whether relay calls idle before it waits for data, so
// a step may leave output for idle to flush.
func (r *sockReader) waitsIdle() bool { return r != nil && r.raw }

func (r *sockReader) loop(step, idle func() error) error {
	if r == nil || r.rc == nil {
		for {
			if err := step(); err != nil {
				return err
			}
		}
	}
	for {
		var stepErr error
		readErr := r.rc.Read(func(fd uintptr) bool {
			// This runs first or after the poller signalled readiness, so
			// the socket may contain data.
			r.fd, r.raw = int(fd), true
			for range maxStepsPerWait {
				stepErr = step()
				if errors.Is(stepErr, errWouldBlock) {
					stepErr = nil
					if idle != nil {
						if stepErr = idle(); stepErr != nil {
							return true
						}
					}
					return false
				}
				if stepErr != nil {
					return true
				}
			}
			return true
		})
		r.raw = false
		if stepErr != nil {
			return stepErr
		}
		if readErr != nil {
			return readErr
		}
	}
}
