package transform

// SIVEncrypt returns the AES-SIV encryption of msg under a 64-byte key and
// one associated data string, computed by the encrypter tokenize uses.
func SIVEncrypt(key, ad []byte, msg string) ([]byte, error) {
	s, err := newSIVEncrypter(key, ad)
	if err != nil {
		return nil, err
	}
	return s.appendEncrypt(nil, msg), nil
}
