package awstest

import (
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// VersityGWEnv names the versitygw binary to run, where it is not on PATH
// nor in the Go bin folder.
const VersityGWEnv = "BRIGHTRUN_VERSITYGW"

// VersityGWInstall is how to install the pinned versitygw.
const VersityGWInstall = "bash infra/emulators/install.sh` or `go install github.com/versity/versitygw/cmd/versitygw@" + VersityGWVersion

// VersityGWVersion is the versitygw release the tests are known to pass with.
const VersityGWVersion = "v1.8.0"

// VersityGW returns the S3 emulator shared by the test binary, starting it
// on first use: versitygw (Versity S3 Gateway, Apache-2.0) over a temporary
// folder. Unlike moto, it checks SigV4 signatures of presigned URLs (key,
// method, expiry, signed Content-Length and x-amz-checksum-sha256),
// verifies checksums (BadDigest) and enforces multipart rules
// (EntityTooSmall, InvalidPart, NoSuchUpload). It skips tb when versitygw
// cannot start (fails it when BRIGHTRUN_REQUIRE_EMULATORS=1).
func VersityGW(tb testing.TB) *Emulator {
	tb.Helper()
	gwOnce.Do(func() { gw, gwErr = startVersityGW() })
	if gwErr != nil {
		Unavailable(tb, "versitygw (S3 emulator)", gwErr, VersityGWInstall)
	}
	return gw
}

func findVersityGW() (string, error) {
	if p := os.Getenv(VersityGWEnv); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	dirs := []string{os.Getenv("GOBIN")}
	for _, gopath := range filepath.SplitList(build.Default.GOPATH) {
		dirs = append(dirs, filepath.Join(gopath, "bin"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("versitygw is neither on PATH, in the Go bin folder, nor named by " + VersityGWEnv)
}

func startVersityGW() (*Emulator, error) {
	bin, err := findVersityGW()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for try := 0; try < 3; try++ {
		dir, err := os.MkdirTemp("", "brightrun-versitygw-")
		if err != nil {
			return nil, err
		}
		data, meta := filepath.Join(dir, "data"), filepath.Join(dir, "meta")
		for _, d := range []string{data, meta} {
			if err := os.Mkdir(d, 0o700); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
		}
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		// Metadata in a sidecar folder: no need for extended attributes.
		args := []string{bin, "--access", AccessKeyID, "--secret", SecretAccessKey, "--region", Region,
			"--port", addr, "--quiet", "posix", "--sidecar", meta, data}
		e, err := start("versitygw", args, nil, "http://"+addr, 30*time.Second, func() { os.RemoveAll(dir) })
		if err == nil {
			return e, nil
		}
		lastErr = err
	}
	return nil, lastErr
}
