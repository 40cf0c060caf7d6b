package wardtest

import "syscall"

// sysProcAttr makes the kernel send SIGKILL to the server when the test
// process dies, so a crashed test leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
