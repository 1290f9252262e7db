package contract_test

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// FuzzVerify feeds arbitrary headers and bodies to Verify: it must never
// panic, and must accept only what was signed with the key.
func FuzzVerify(f *testing.F) {
	key := contract.DeriveSecret([]byte("brightrun-example-master-secret-0123456789abcdef"), "job_01JDX5Q3M8Z4N7W2K9R6T1V0BC")
	now := time.Unix(1795608847, 0)
	body := `{"version":1,"type":"progress","job_id":"job_01JDX5Q3M8Z4N7W2K9R6T1V0BC","attempt":1,"seq":9}`
	id := "job_01JDX5Q3M8Z4N7W2K9R6T1V0BC.1.9"
	good := contract.Sign(key, id, now, []byte(body))

	f.Add(id, "1795608847", good, body)
	f.Add(id, "1795608847", "v1,XG9BT+6XhgykK7duJqHqqbc/vWSi8mRVq7947jiUjek=", body)
	f.Add(id, "1795608847", "v1,a v1,b "+good, body)
	f.Add("", "", "", "")
	f.Add(id, "0", good, body)
	f.Add(id, "99999999999999999999", good, body)
	f.Add(id, "-300", good, body)
	f.Add(id, "1795608847", "v1,", body)
	f.Add(id, "1795608847", "v1,,,,", "")
	f.Add(id, "1795608847", strings.Repeat("v1,AAAA ", 100), body)
	f.Add("j.1.1", "1795608847", "v1,====", "\xff\xfe")

	f.Fuzz(func(t *testing.T, id, ts, sig, body string) {
		h := http.Header{}
		h.Set(contract.HeaderID, id)
		h.Set(contract.HeaderTimestamp, ts)
		h.Set(contract.HeaderSignature, sig)
		err := contract.Verify(key, h, []byte(body), now)
		if err == nil && !signedByKey(key, id, ts, sig, body) {
			t.Fatalf("Verify accepted a message not signed with the key: id=%q ts=%q sig=%q", id, ts, sig)
		}
		_, _, _, _ = contract.ParseWebhookID(id)
		_, _, _ = contract.ParseCallback([]byte(body))
	})
}

// signedByKey is an independent check: some "v1," entry of sig decodes to
// the HMAC of id.ts.body under key.
func signedByKey(key []byte, id, ts, sig, body string) bool {
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	want := strings.TrimPrefix(contract.Sign(key, id, time.Unix(n, 0), []byte(body)), "v1,")
	wantBytes, _ := base64.StdEncoding.DecodeString(want)
	for _, e := range strings.Split(sig, " ") {
		v, ok := strings.CutPrefix(e, "v1,")
		if !ok {
			continue
		}
		if got, err := base64.StdEncoding.DecodeString(v); err == nil && string(got) == string(wantBytes) {
			return true
		}
	}
	return false
}
