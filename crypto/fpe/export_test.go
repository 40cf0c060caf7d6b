package fpe

// SetForceBig makes the ciphers use big integers for every input until the
// returned function runs.
func SetForceBig(on bool) (restore func()) {
	old := forceBig
	forceBig = on
	return func() { forceBig = old }
}
