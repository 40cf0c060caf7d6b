// Package kek defines key-encryption keys (KEKs): keys that seal and unseal
// ward's keysets and never encrypt application data themselves.
//
// A KEK is an AEAD in the sense of RFC 5116 with the method set of tink.AEAD,
// so a KEK can be passed straight to Tink's keyset.Handle write and read
// functions. This package provides the local KEK: a 256-bit AES-GCM key kept
// in a file of mode 0600. Other implementations live elsewhere: the PKCS#11
// KEK in ward.dev/ward/crypto/hsm and the Vault Transit KEK in
// ward.dev/ward/crypto/kek/vaulttransit.
//
// Security contract: an implementation returns an error wrapping [ErrSealed]
// when the key cannot be reached at all (file missing, HSM gone, Vault down or
// sealed), so that callers can return 503 and retry later, and a plain error
// when the key was reached but refused the input (authentication failure).
// Nothing in this package logs.
package kek

import "errors"

// ErrSealed reports that a KEK is unreachable: its file is missing, its HSM is
// gone or its Vault is down or sealed. Callers return 503 Service Unavailable.
var ErrSealed = errors.New("kek: sealed")

// KEK is a key-encryption key. Implementations are safe for concurrent use.
//
// Encrypt returns a ciphertext that authenticates both plaintext and
// associatedData. Decrypt returns an error unless the ciphertext was produced
// by Encrypt of the same KEK with the same associatedData.
type KEK interface {
	Encrypt(plaintext, associatedData []byte) ([]byte, error)
	Decrypt(ciphertext, associatedData []byte) ([]byte, error)
}
