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

// CMAC returns AES-CMAC(msg) under key, computed as e-mail pseudonyms and
// tokenize compute it.
func CMAC(key, msg []byte) ([]byte, error) {
	c, err := newCMACKey(key)
	if err != nil {
		return nil, err
	}
	sum := c.sum(msg)
	return sum[:], nil
}

// CMACExpand returns n bytes of the e-mail pseudonym function of parts.
func CMACExpand(key []byte, n int, parts ...string) ([]byte, error) {
	c, err := newCMACKey(key)
	if err != nil {
		return nil, err
	}
	return c.expand(nil, n, parts...), nil
}
