package pgproxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// ErrAuth means the client failed to authenticate.
var ErrAuth = errors.New("authentication failed")

const scramMechanism = "SCRAM-SHA-256"

// maxSASLMessage bounds a SASL message from the client.
const maxSASLMessage = 2048

// scramExchange runs the server side of SCRAM-SHA-256 (RFC 5802, RFC 7677)
// on be and checks the proof against v. For an unknown user the caller
// passes a decoy verifier, so timing and messages do not reveal which users
// exist. Channel binding is not offered.
func scramExchange(be *pgproto3.Backend, v *Verifier, rand io.Reader) error {
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{scramMechanism}})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return err
	}
	msg, err := be.Receive()
	if err != nil {
		return err
	}
	initial, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return fmt.Errorf("%w: expected SASLInitialResponse, got %T", ErrAuth, msg)
	}
	if initial.AuthMechanism != scramMechanism {
		return fmt.Errorf("%w: mechanism %q is not supported", ErrAuth, initial.AuthMechanism)
	}
	if len(initial.Data) > maxSASLMessage {
		return fmt.Errorf("%w: client-first-message too long", ErrAuth)
	}

	gs2, clientFirstBare, clientNonce, err := parseClientFirst(string(initial.Data))
	if err != nil {
		return err
	}
	raw := make([]byte, 18)
	if _, err := io.ReadFull(rand, raw); err != nil {
		return err
	}
	nonce := clientNonce + base64.StdEncoding.EncodeToString(raw)
	serverFirst := fmt.Sprintf("r=%s,s=%s,i=%d", nonce, base64.StdEncoding.EncodeToString(v.Salt), v.Iterations)
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)})
	if err := be.Flush(); err != nil {
		return err
	}

	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return err
	}
	msg, err = be.Receive()
	if err != nil {
		return err
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return fmt.Errorf("%w: expected SASLResponse, got %T", ErrAuth, msg)
	}
	if len(resp.Data) > maxSASLMessage {
		return fmt.Errorf("%w: client-final-message too long", ErrAuth)
	}
	withoutProof, proof, err := parseClientFinal(string(resp.Data), gs2, nonce)
	if err != nil {
		return err
	}

	authMessage := clientFirstBare + "," + serverFirst + "," + withoutProof
	clientSignature := hmacSum(v.StoredKey[:], authMessage)
	clientKey := make([]byte, sha256.Size)
	subtle.XORBytes(clientKey, proof, clientSignature)
	stored := sha256.Sum256(clientKey)
	clear(clientKey)
	if subtle.ConstantTimeCompare(stored[:], v.StoredKey[:]) != 1 {
		return ErrAuth
	}

	serverSignature := hmacSum(v.ServerKey[:], authMessage)
	be.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte("v=" + base64.StdEncoding.EncodeToString(serverSignature))})
	return nil
}

// parseClientFirst splits "gs2-header client-first-message-bare" and returns
// the header, the bare message and the client nonce.
func parseClientFirst(s string) (gs2, bare, nonce string, err error) {
	switch {
	case strings.HasPrefix(s, "n,"), strings.HasPrefix(s, "y,"):
	case strings.HasPrefix(s, "p="):
		return "", "", "", fmt.Errorf("%w: channel binding is not supported", ErrAuth)
	default:
		return "", "", "", fmt.Errorf("%w: malformed gs2 header", ErrAuth)
	}
	// The header is "n," or "y," followed by an optional authzid and ",".
	i := strings.IndexByte(s[2:], ',')
	if i < 0 {
		return "", "", "", fmt.Errorf("%w: malformed gs2 header", ErrAuth)
	}
	gs2, bare = s[:2+i+1], s[2+i+1:]
	if strings.HasPrefix(bare, "m=") {
		return "", "", "", fmt.Errorf("%w: SCRAM extensions are not supported", ErrAuth)
	}
	for _, attr := range strings.Split(bare, ",") {
		if strings.HasPrefix(attr, "r=") {
			nonce = attr[2:]
		}
	}
	if nonce == "" || strings.ContainsAny(nonce, ", ") {
		return "", "", "", fmt.Errorf("%w: client nonce missing or malformed", ErrAuth)
	}
	return gs2, bare, nonce, nil
}

// parseClientFinal checks "c=...,r=...,p=..." and returns the message
// without the proof, and the decoded proof.
func parseClientFinal(s, gs2, nonce string) (string, []byte, error) {
	i := strings.LastIndex(s, ",p=")
	if i < 0 {
		return "", nil, fmt.Errorf("%w: proof missing", ErrAuth)
	}
	withoutProof := s[:i]
	proof, err := base64.StdEncoding.DecodeString(s[i+3:])
	if err != nil || len(proof) != sha256.Size {
		return "", nil, fmt.Errorf("%w: malformed proof", ErrAuth)
	}
	parts := strings.Split(withoutProof, ",")
	if len(parts) < 2 || parts[0] != "c="+base64.StdEncoding.EncodeToString([]byte(gs2)) {
		return "", nil, fmt.Errorf("%w: channel binding data does not match", ErrAuth)
	}
	if !hmac.Equal([]byte(parts[1]), []byte("r="+nonce)) {
		return "", nil, fmt.Errorf("%w: nonce does not match", ErrAuth)
	}
	return withoutProof, proof, nil
}
