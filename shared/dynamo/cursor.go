package dynamo

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// cursorSigner makes list cursors opaque and unforgeable: a cursor is the
// JSON of the list it belongs to (scope and owner) and the index position
// to continue after, base64url-encoded, a dot, and the HMAC-SHA256 of that
// text under the store's cursor key.
type cursorSigner struct {
	key []byte
}

// cursorBody is what a cursor carries.
type cursorBody struct {
	Version int               `json:"v"`
	Scope   string            `json:"s"`
	Owner   string            `json:"o,omitempty"`
	Key     map[string]string `json:"k"`
}

const cursorDomain = "brightrun/dynamo/cursor/v1\x00"

func (c cursorSigner) mac(payload string) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(cursorDomain))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

func (c cursorSigner) encode(q listQuery, k map[string]string) (string, error) {
	data, err := json.Marshal(cursorBody{Version: 1, Scope: q.scope, Owner: q.owner, Key: k})
	if err != nil {
		return "", fmt.Errorf("encode cursor: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(data)
	return payload + "." + base64.RawURLEncoding.EncodeToString(c.mac(payload)), nil
}

var errBadCursor = pipeline.Errorf(pipeline.EInvalid, "cursor is not one this list returned")

// decode checks a cursor against the list q and returns the ExclusiveStartKey
// it holds.
func (c cursorSigner) decode(cursor string, q listQuery) (map[string]types.AttributeValue, error) {
	payload, sig, ok := strings.Cut(cursor, ".")
	if !ok {
		return nil, errBadCursor
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, c.mac(payload)) {
		return nil, errBadCursor
	}
	data, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, errBadCursor
	}
	var b cursorBody
	if err := json.Unmarshal(data, &b); err != nil || b.Version != 1 {
		return nil, errBadCursor
	}
	// Signed by us, but for another list or another owner.
	if b.Scope != q.scope || b.Owner != q.owner {
		return nil, errBadCursor
	}
	// And the position itself must lie in this list's partition: the
	// table's key and, for an index, the index's key, and nothing else.
	names := map[string]bool{attrPK: true, attrSK: true, q.hashAttr: true, q.rangeAttr: true}
	if b.Key[q.hashAttr] != q.hash || len(b.Key) != len(names) {
		return nil, errBadCursor
	}
	for name := range names {
		if b.Key[name] == "" {
			return nil, errBadCursor
		}
	}
	if !strings.HasPrefix(b.Key[q.rangeAttr], q.prefix) {
		return nil, errBadCursor
	}
	// On an index the table's partition must be the owner's too (on the
	// table itself it is the list's partition, checked above).
	if q.owner != "" && q.index != "" && b.Key[attrPK] != ownerPK(q.owner) {
		return nil, errBadCursor
	}
	start := make(map[string]types.AttributeValue, len(b.Key))
	for name, v := range b.Key {
		start[name] = &types.AttributeValueMemberS{Value: v}
	}
	return start, nil
}
