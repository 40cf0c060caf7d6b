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
	table *rules.Table
	out   io.Writer
	work  chan *rowBatch
	order chan *rowBatch

	wg      sync.WaitGroup
	written chan error // the writer's result
	mu      sync.Mutex
	failed  error

	// spare contains batch buffers that were written out, for reuse.
	spare chan []byte
}

func newPipeline(table *rules.Table, out io.Writer) *pipeline {
	workers := runtime.GOMAXPROCS(0)
	p := &pipeline{
		table:   table,
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
		b.out, row, b.err = maskLines(p.table, text, b.firstRow, row, p.buffer())
		close(b.done)
	}
}

// maskLines masks every line of in and appends the COPY text to out. It
// returns row, grown as needed, for reuse by the next call.
func maskLines(table *rules.Table, in string, firstRow int64, row []rules.Field, out []byte) ([]byte, []rules.Field, error) {
	n := firstRow
	for len(in) > 0 {
		i := strings.IndexByte(in, '\n')
		var err error
		row, err = decodeCopyRow(in[:i], row)
		if err == nil && len(row) != len(table.Columns()) {
			err = errFieldCount(len(row), len(table.Columns()))
		}
		if err == nil {
			err = table.MaskRow(row)
		}
		if err != nil {
			return out, row, &RowError{Table: table.Name(), Row: n, Err: err}
		}
		out = appendCopyRow(out, row)
		in = in[i+1:]
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

// maskWriter receives COPY text data from the source and splits it into
// rows. Data messages may split or join lines, so it keeps an incomplete
// line until the rest arrives. A table without masked columns is copied
// through. An ordered table (see rules.Table.Ordered) is masked row by row
// in order, and any other table in batches on several goroutines.
type maskWriter struct {
	table    *rules.Table
	out      io.Writer
	progress func(string, int64, bool)
	partial  []byte
	rows     int64

	pipe    *pipeline
	batch   *rowBatch
	row     []rules.Field
	buf     []byte
	checked bool // masks and ordered are set
	masks   bool
	ordered bool
}

func (m *maskWriter) Write(p []byte) (int, error) {
	data := p
	if len(m.partial) > 0 {
		m.partial = append(m.partial, p...)
		data = m.partial
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if err := m.line(data[:i+1]); err != nil {
			return 0, err
		}
		data = data[i+1:]
	}
	m.partial = append(m.partial[:0], data...)
	if len(m.partial) > MaxLine {
		return 0, &RowError{Table: m.table.Name(), Row: m.rows + 1, Err: fmt.Errorf("%w: row longer than %d bytes", ErrFormat, MaxLine)}
	}
	return len(p), nil
}

// line handles one newline-terminated COPY line.
func (m *maskWriter) line(line []byte) error {
	m.rows++
	if m.progress != nil && m.rows%progressEvery == 0 {
		m.progress(m.table.Name(), m.rows, false)
	}
	if !m.checked {
		m.masks, m.ordered, m.checked = m.table.Masks(), m.table.Ordered(), true
	}
	switch {
	case !m.masks:
		_, err := m.out.Write(line)
		return err
	case m.ordered:
		var err error
		m.buf, m.row, err = maskLines(m.table, string(line), m.rows, m.row, m.buf[:0])
		if err != nil {
			return err
		}
		_, err = m.out.Write(m.buf)
		return err
	}

	if m.pipe == nil {
		m.pipe = newPipeline(m.table, m.out)
	}
	if m.batch == nil {
		m.batch = &rowBatch{firstRow: m.rows, in: m.pipe.buffer()}
	}
	m.batch.in = append(m.batch.in, line...)
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
	if len(m.partial) > 0 {
		err = &RowError{Table: m.table.Name(), Row: m.rows + 1, Err: fmt.Errorf("%w: COPY data ends inside a row", ErrFormat)}
	}
	if m.pipe == nil {
		return err
	}
	if m.batch != nil && err == nil {
		err = m.pipe.submit(m.batch)
	}
	if perr := m.pipe.close(); perr != nil {
		return perr
	}
	return err
}

func errFieldCount(got, want int) error {
	return fmt.Errorf("%w: COPY row has %d fields, want %d", ErrFormat, got, want)
}
