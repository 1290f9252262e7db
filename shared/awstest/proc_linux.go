package awstest

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr makes the emulator die with the test binary, even one killed
// before its TestMain could stop it.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
