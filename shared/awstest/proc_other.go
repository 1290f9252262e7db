//go:build !linux

package awstest

import (
	"os"
	"os/exec"
)

func setProcAttr(cmd *exec.Cmd) {}

func terminate(p *os.Process) error { return p.Kill() }
