package dynamo

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/pipeline"
)

const (
	// maxItemBytes is DynamoDB's item size limit.
	maxItemBytes = 400 * 1024
	// compressOver is the document size over which it is stored
	// gzip-compressed.
	compressOver = 8 << 10
	// maxDocBytes bounds a document once uncompressed, so that a stored
	// record can never inflate into something unreasonable.
	maxDocBytes = 16 << 20
)

// encodeDoc returns an item holding rec's JSON: in doc, or gzip-compressed
// in doc_gz when it is large.
func encodeDoc(rec any) (map[string]types.AttributeValue, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if len(data) <= compressOver {
		return map[string]types.AttributeValue{attrDoc: &types.AttributeValueMemberS{Value: string(data)}}, nil
	}
	if len(data) > maxDocBytes {
		return nil, pipeline.Errorf(pipeline.ETooLarge, "the record is %d bytes of JSON, over the %d-byte limit", len(data), maxDocBytes)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return map[string]types.AttributeValue{attrDocGz: &types.AttributeValueMemberB{Value: buf.Bytes()}}, nil
}

// decodeDoc decodes the JSON document of item into rec.
func decodeDoc(item map[string]types.AttributeValue, rec any) error {
	if s, ok := item[attrDoc].(*types.AttributeValueMemberS); ok {
		return json.Unmarshal([]byte(s.Value), rec)
	}
	b, ok := item[attrDocGz].(*types.AttributeValueMemberB)
	if !ok {
		return fmt.Errorf("item has neither %s nor %s", attrDoc, attrDocGz)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.Value))
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(zr, maxDocBytes+1))
	if err != nil {
		return err
	}
	if len(data) > maxDocBytes {
		return fmt.Errorf("document inflates past %d bytes", maxDocBytes)
	}
	return json.Unmarshal(data, rec)
}

// checkSize refuses an item DynamoDB would refuse for its size, with a
// message that says so.
func checkSize(k kind, id string, item map[string]types.AttributeValue) error {
	if n := itemSize(item); n > maxItemBytes {
		return pipeline.Errorf(pipeline.ETooLarge, "%s %s is %d bytes once stored (compressed), over DynamoDB's 400 KB (%d-byte) item limit", k.name, id, n, maxItemBytes)
	}
	return nil
}

// itemSize is a flat item's size as DynamoDB counts it: attribute names
// plus values (strings and binaries by length, numbers at most 21 bytes).
func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberB:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			n += 21
		default:
			n += 1 << 10 // not written by this package; count generously
		}
	}
	return n
}
