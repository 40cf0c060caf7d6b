//go:build !linux

package wardtest

import "syscall"

// sysProcAttr returns nil: outside Linux a server outlives a crashed test.
func sysProcAttr() *syscall.SysProcAttr { return nil }
