package vaulttransit_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// transitStandIn serves the two Vault Transit endpoints that the KEK calls,
// POST or PUT /v1/<mount>/encrypt/<key> and /v1/<mount>/decrypt/<key>, with
// the request and response JSON of Vault's Transit API documentation. It
// encrypts with AES-256-GCM like an aes256-gcm96 key, prefixes ciphertexts
// with "vault:v1:", and returns errors as Vault does: {"errors":[...]} with
// 403 for a wrong token, 503 while sealed, 400 for bad input.
type transitStandIn struct {
	token  string
	mount  string
	key    string
	aead   cipher.AEAD
	sealed atomic.Bool
	calls  atomic.Int32
}

func newTransitStandIn(t *testing.T, token, mount, key string) (*transitStandIn, *httptest.Server) {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	s := &transitStandIn{token: token, mount: mount, key: key, aead: aead}
	srv := httptest.NewServer(s) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return s, srv
}

func writeVaultError(w http.ResponseWriter, status int, msgs ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string][]string{"errors": msgs})
}

func writeVaultData(w http.ResponseWriter, data map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"request_id":     "00000000-0000-0000-0000-000000000000",
		"lease_id":       "",
		"renewable":      false,
		"lease_duration": 0,
		"data":           data,
		"wrap_info":      nil,
		"warnings":       nil,
		"auth":           nil,
	})
}

func (s *transitStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	if s.sealed.Load() {
		writeVaultError(w, http.StatusServiceUnavailable, "Vault is sealed")
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		writeVaultError(w, http.StatusMethodNotAllowed, "unsupported operation")
		return
	}
	// The stand-in has only the root namespace.
	if ns := r.Header.Get("X-Vault-Namespace"); ns != "" {
		writeVaultError(w, http.StatusForbidden, "permission denied: namespace "+ns+" not found")
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Vault-Token")), []byte(s.token)) != 1 {
		writeVaultError(w, http.StatusForbidden, "permission denied")
		return
	}

	var body struct {
		Plaintext      string `json:"plaintext"`
		Ciphertext     string `json:"ciphertext"`
		AssociatedData string `json:"associated_data"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeVaultError(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
		return
	}
	aad, err := base64.StdEncoding.DecodeString(body.AssociatedData)
	if err != nil {
		writeVaultError(w, http.StatusBadRequest, "failed to base64-decode associated data")
		return
	}

	switch r.URL.Path {
	case "/v1/" + s.mount + "/encrypt/" + s.key:
		pt, err := base64.StdEncoding.DecodeString(body.Plaintext)
		if err != nil {
			writeVaultError(w, http.StatusBadRequest, "failed to base64-decode plaintext")
			return
		}
		nonce := make([]byte, s.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			writeVaultError(w, http.StatusInternalServerError, err.Error())
			return
		}
		ct := s.aead.Seal(nonce, nonce, pt, aad)
		writeVaultData(w, map[string]any{"ciphertext": "vault:v1:" + base64.StdEncoding.EncodeToString(ct), "key_version": 1})

	case "/v1/" + s.mount + "/decrypt/" + s.key:
		encoded, ok := strings.CutPrefix(body.Ciphertext, "vault:v1:")
		if !ok {
			writeVaultError(w, http.StatusBadRequest, "invalid ciphertext: no prefix")
			return
		}
		ct, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil || len(ct) < s.aead.NonceSize() {
			writeVaultError(w, http.StatusBadRequest, "invalid ciphertext: could not decode")
			return
		}
		pt, err := s.aead.Open(nil, ct[:s.aead.NonceSize()], ct[s.aead.NonceSize():], aad)
		if err != nil {
			writeVaultError(w, http.StatusBadRequest, "cipher: message authentication failed")
			return
		}
		writeVaultData(w, map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)})

	default:
		writeVaultError(w, http.StatusNotFound, "no handler for route \""+strings.TrimPrefix(r.URL.Path, "/v1/")+"\"")
	}
}
