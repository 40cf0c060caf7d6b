package static

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"ward.dev/ward/masking/rules"
)

// batchRows is the number of COPY rows masked as one unit of work. In
// BenchmarkCopyDatabase on two cores, 2048 gave about 5% more rows per
// second than 512, probably through fewer hand-offs between goroutines. The
// batches in flight stay a few megabytes for rows of about 100 bytes.
const batchRows = 2048

// rowBatch is a run of consecutive COPY text lines and their masked form.
type rowBatch struct {
	in       []byte // newline-terminated input lines
	out      []byte
	firstRow int64 // 1-based number of the first row
	err      error
	done     chan struct{}
}

// pipeline masks batches of COPY rows on several goroutines and writes the
// results to out in input order. Memory is bounded by the number of
// batches in flight.
type pipeline struct {
	table  *rules.Table
	binary bool // batches hold COPY binary tuples instead of text lines
	out    io.Writer
	work   chan *rowBatch
	order  chan *rowBatch

	wg      sync.WaitGroup
	written chan error // the writer's result
	mu      sync.Mutex
	failed  error

	// spare contains batch buffers that were written out, for reuse.
	spare chan []byte
}

func newPipeline(table *rules.Table, binary bool, out io.Writer) *pipeline {
	workers := runtime.GOMAXPROCS(0)
	p := &pipeline{
		table:   table,
		binary:  binary,
		out:     out,
		work:    make(chan *rowBatch, workers),
		order:   make(chan *rowBatch, 2*workers),
		written: make(chan error, 1),
		spare:   make(chan []byte, 4*workers),
	}
	for range workers {
		p.wg.Add(1)
		go p.maskBatches()
	}
	go p.writeBatches()
	return p
}

// buffer returns an empty buffer for a batch, reusing a written one when
// there is one.
func (p *pipeline) buffer() []byte {
	select {
	case buf := <-p.spare:
		return buf[:0]
	default:
		// Sized for typical rows, so appends rarely grow the buffer.
		return make([]byte, 0, batchRows*128)
	}
}

// maxSpareBuffer is the largest buffer kept for reuse, so that a batch of
// unusually long rows does not pin its memory for the rest of the copy.
const maxSpareBuffer = 1 << 20

// recycle offers buf for reuse, dropping it when it is large or enough are
// spare.
func (p *pipeline) recycle(buf []byte) {
	if cap(buf) > maxSpareBuffer {
		return
	}
	select {
	case p.spare <- buf:
	default:
	}
}

func (p *pipeline) maskBatches() {
	defer p.wg.Done()
	var row []rules.Field
	for b := range p.work {
		// The batch becomes one string, and the fields of every row are
		// slices of it, so decoding a row allocates nothing.
		text := string(b.in)
		p.recycle(b.in)
		b.in = nil
		b.out, row, b.err = maskRows(p.table, p.binary, text, b.firstRow, row, p.buffer())
		close(b.done)
	}
}

// maskRows masks every row of in, COPY text lines or binary tuples, and
// appends them in the same format to out. It returns row, grown as needed,
// for reuse by the next call.
func maskRows(table *rules.Table, binary bool, in string, firstRow int64, row []rules.Field, out []byte) ([]byte, []rules.Field, error) {
	n := firstRow
	for len(in) > 0 {
		var err error
		if binary {
			row, in, err = decodeBinaryTuple(in, row)
		} else {
			i := strings.IndexByte(in, '\n')
			row, err = decodeCopyRow(in[:i], row)
			in = in[i+1:]
		}
		if err == nil && len(row) != len(table.Columns()) {
			err = errFieldCount(len(row), len(table.Columns()))
		}
		if err == nil {
			err = table.MaskRow(row)
		}
		if err == nil {
			if binary {
				out, err = appendBinaryTuple(out, row)
			} else {
				out = appendCopyRow(out, row)
			}
		}
		if err != nil {
			return out, row, &RowError{Table: table.Name(), Row: n, Err: err}
		}
		n++
	}
	return out, row, nil
}

func (p *pipeline) writeBatches() {
	var err error
	for b := range p.order {
		<-b.done
		if err != nil {
			continue
		}
		if b.err != nil {
			err = b.err
		} else {
			_, err = p.out.Write(b.out)
			p.recycle(b.out)
			b.out = nil
		}
		if err != nil {
			p.mu.Lock()
			p.failed = err
			p.mu.Unlock()
		}
	}
	p.written <- err
}

// submit queues b; it blocks while too many batches are in flight. It
// returns the first failure so far, so the reader can stop early.
func (p *pipeline) submit(b *rowBatch) error {
	p.mu.Lock()
	err := p.failed
	p.mu.Unlock()
	if err != nil {
		return err
	}
	b.done = make(chan struct{})
	p.order <- b
	p.work <- b
	return nil
}

// close waits for every queued batch and returns the first failure.
func (p *pipeline) close() error {
	close(p.work)
	p.wg.Wait()
	close(p.order)
	return <-p.written
}

// maskWriter receives COPY data from the source, text or binary, and
// splits it into rows. Data messages may split or join rows, so it keeps
// an incomplete row until the rest arrives. A table without masked columns
// is copied through. An ordered table (see rules.Table.Ordered) is masked
// row by row in order, and any other table in batches on several
// goroutines.
type maskWriter struct {
	table    *rules.Table
	out      io.Writer
	binary   bool
	progress func(string, int64, bool)
	partial  []byte
	rows     int64

	pipe    *pipeline
	batch   *rowBatch
	fields  []rules.Field
	buf     []byte
	checked bool // masks and ordered are set
	masks   bool
	ordered bool
	// header and trailer record the binary format's framing seen so far.
	header, trailer bool
}

func (m *maskWriter) Write(p []byte) (int, error) {
	data := p
	if len(m.partial) > 0 {
		m.partial = append(m.partial, p...)
		data = m.partial
	}
	var err error
	if m.binary {
		data, err = m.splitTuples(data)
	} else {
		data, err = m.splitLines(data)
	}
	if err != nil {
		return 0, err
	}
	m.partial = append(m.partial[:0], data...)
	if len(m.partial) > MaxLine {
		return 0, &RowError{Table: m.table.Name(), Row: m.rows + 1, Err: fmt.Errorf("%w: row longer than %d bytes", ErrFormat, MaxLine)}
	}
	return len(p), nil
}

// splitLines hands each complete text line of data to row and returns the
// incomplete rest.
func (m *maskWriter) splitLines(data []byte) ([]byte, error) {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return data, nil
		}
		if err := m.row(data[:i+1]); err != nil {
			return nil, err
		}
		data = data[i+1:]
	}
}

// splitTuples passes the binary header through, hands each complete tuple
// of data to row, and returns the incomplete rest.
func (m *maskWriter) splitTuples(data []byte) ([]byte, error) {
	if !m.header {
		n, err := parseBinaryHeader(data)
		if err != nil || n == 0 {
			return data, m.rowError(err)
		}
		if _, err := io.WriteString(m.out, binaryHeader); err != nil {
			return nil, err
		}
		m.header = true
		data = data[n:]
	}
	for len(data) > 0 {
		if m.trailer {
			return nil, m.rowError(fmt.Errorf("%w: data after the trailer", errBinaryFormat))
		}
		n, err := binaryTupleLen(data, len(m.table.Columns()))
		switch {
		case err != nil:
			return nil, m.rowError(err)
		case n == 0:
			return data, nil
		case n < 0:
			m.trailer = true
			data = data[2:]
			continue
		}
		if err := m.row(data[:n]); err != nil {
			return nil, err
		}
		data = data[n:]
	}
	return data, nil
}

// rowError wraps err, when there is one, as a failure of the next row.
func (m *maskWriter) rowError(err error) error {
	if err == nil {
		return nil
	}
	return &RowError{Table: m.table.Name(), Row: m.rows + 1, Err: err}
}

// row handles one COPY row: a newline-terminated text line or a binary
// tuple.
func (m *maskWriter) row(data []byte) error {
	m.rows++
	if m.progress != nil && m.rows%progressEvery == 0 {
		m.progress(m.table.Name(), m.rows, false)
	}
	if !m.checked {
		m.masks, m.ordered, m.checked = m.table.Masks(), m.table.Ordered(), true
	}
	switch {
	case !m.masks:
		_, err := m.out.Write(data)
		return err
	case m.ordered:
		var err error
		m.buf, m.fields, err = maskRows(m.table, m.binary, string(data), m.rows, m.fields, m.buf[:0])
		if err != nil {
			return err
		}
		_, err = m.out.Write(m.buf)
		return err
	}

	if m.pipe == nil {
		m.pipe = newPipeline(m.table, m.binary, m.out)
	}
	if m.batch == nil {
		m.batch = &rowBatch{firstRow: m.rows, in: m.pipe.buffer()}
	}
	m.batch.in = append(m.batch.in, data...)
	if m.rows-m.batch.firstRow+1 < batchRows {
		return nil
	}
	b := m.batch
	m.batch = nil
	return m.pipe.submit(b)
}

// finish masks what is still queued and reports the first failure. It
// must be called once, after the last Write, even when the copy failed,
// so that the pipeline's goroutines end.
func (m *maskWriter) finish() error {
	var err error
	switch {
	case len(m.partial) > 0:
		err = m.rowError(fmt.Errorf("%w: COPY data ends inside a row", ErrFormat))
	case m.binary && !m.trailer:
		err = m.rowError(fmt.Errorf("%w: COPY data ends without the trailer", errBinaryFormat))
	}
	if m.pipe != nil {
		if m.batch != nil && err == nil {
			err = m.pipe.submit(m.batch)
		}
		if perr := m.pipe.close(); perr != nil {
			return perr
		}
	}
	if err == nil && m.binary {
		_, err = io.WriteString(m.out, binaryTrailer)
	}
	return err
}

func errFieldCount(got, want int) error {
	return fmt.Errorf("%w: COPY row has %d fields, want %d", ErrFormat, got, want)
}
