package pgproxy

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// clientStream builds the bytes a client sends: a startup packet, then
// typed messages.
func clientStream(msgs ...pgproto3.FrontendMessage) []byte {
	body := binary.BigEndian.AppendUint32(nil, pgproto3.ProtocolVersion30)
	for _, kv := range []string{"user", "tester", "database", "chinook"} {
		body = append(append(body, kv...), 0)
	}
	body = append(body, 0)
	out := append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
	for _, m := range msgs {
		out, _ = m.Encode(out)
	}
	return out
}

// FuzzClientMessages feeds arbitrary bytes to the proxy's reading of a
// client: startup negotiation, size-bounded message decoding, and the
// parsing and lineage tracing of every query text.
func FuzzClientMessages(f *testing.F) {
	f.Add(clientStream(&pgproto3.Query{String: "SELECT email FROM customer"}))
	f.Add(clientStream(
		&pgproto3.Parse{Name: "s", Query: "SELECT * FROM contact WHERE id = $1"},
		&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{1}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add([]byte{0, 0, 0, 8, 4, 210, 22, 47})
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2})

	srv := &Server{cfg: &Config{Limits: Limits{MaxMessageBytes: 4096}}, sessions: map[uint32]*session{}}
	cat := testCatalog()
	f.Fuzz(func(t *testing.T, data []byte) {
		client, proxy := net.Pipe()
		go func() {
			_, _ = client.Write(data)
			client.Close()
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		defer proxy.Close()

		be, _, _, err := srv.negotiate(proxy)
		if err != nil {
			return
		}
		be.SetMaxBodyLen(srv.cfg.Limits.MaxMessageBytes)
		for range 100 {
			msg, err := be.Receive()
			if err != nil {
				return
			}
			switch m := msg.(type) {
			case *pgproto3.Query:
				_, _ = parseStatements(context.Background(), cat, m.String)
			case *pgproto3.Parse:
				_, _ = parseStatements(context.Background(), cat, m.Query)
			}
		}
	})
}
