package pipeline

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// DatasetStatus is where a dataset is in its life: uploaded (or imported),
// checked, usable.
type DatasetStatus string

const (
	DatasetAwaitingUpload DatasetStatus = "awaiting_upload"
	// DatasetImporting: the server is copying the file from the dataset's
	// Source; validation follows as for an upload.
	DatasetImporting  DatasetStatus = "importing"
	DatasetValidating DatasetStatus = "validating"
	DatasetReady      DatasetStatus = "ready"
	DatasetInvalid    DatasetStatus = "invalid"
)

// DatasetFormat is the shape of an uploaded file's lines (package dataset
// reads each of them).
type DatasetFormat string

const (
	// FormatMessages is the trainer's own: {"messages": [{"role", "content"}]}.
	FormatMessages DatasetFormat = "messages"
	// FormatShareGPT is {"conversations": [{"from", "value"}]}.
	FormatShareGPT DatasetFormat = "sharegpt"
	// FormatAlpaca is {"instruction", "input", "output", "system"}.
	FormatAlpaca DatasetFormat = "alpaca"
)

// ParseDatasetFormat checks a user-given format; "" is FormatMessages.
func ParseDatasetFormat(s string) (DatasetFormat, error) {
	switch f := DatasetFormat(s); f {
	case "":
		return FormatMessages, nil
	case FormatMessages, FormatShareGPT, FormatAlpaca:
		return f, nil
	}
	return "", Errorf(EInvalid, "format must be messages, sharegpt or alpaca, got %q", s)
}

// Dataset is one uploaded chat JSONL file and what validation found in it.
type Dataset struct {
	ID        string        `json:"id"`
	Owner     string        `json:"owner"`
	Name      string        `json:"name"`
	Status    DatasetStatus `json:"status"`
	SizeBytes int64         `json:"size_bytes"`
	// Format is the shape of the uploaded file's lines; "" (a record
	// made before formats) is FormatMessages.
	Format DatasetFormat `json:"format,omitempty"`
	// SHA256 is the hex digest the client declared, if any.
	SHA256 string `json:"sha256,omitempty"`
	// ObjectKey is where the file lives in the blob store.
	ObjectKey string `json:"object_key"`
	// Source is where an imported dataset's file was copied from; nil for
	// an upload.
	Source *ImportSource `json:"source,omitempty"`
	// UploadID is the multipart upload in progress, if any.
	UploadID string `json:"upload_id,omitempty"`
	// ObjectETag is the ETag of the object validation last ran on, so that a
	// duplicate upload event is recognised.
	ObjectETag string `json:"object_etag,omitempty"`
	// ContentSHA256 is the hex sha256 of the stored object, computed while
	// validating it.
	ContentSHA256 string `json:"content_sha256,omitempty"`
	// Converted is the file in the messages form, which validation writes
	// for a valid dataset of another format: what a job trains on. Nil for
	// a messages dataset, whose upload is trained on as it is.
	Converted *StoredFile `json:"converted,omitempty"`
	// Validation is the summary of the last validation: counts, tokens,
	// stats. The full report (every issue) is a blob beside the object.
	Validation *ValidationSummary `json:"validation,omitempty"`
	// Error explains an invalid dataset in one sentence when no report exists
	// (for example an upload whose size differs from the declared size).
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Version increases on every write; stores use it for conditional writes.
	Version int64 `json:"version"`
}

// StoredFile is an object the service wrote, with its size and digest.
type StoredFile struct {
	Key       string `json:"key"`
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
}

// TrainingFile is the object a job downloads to train (or evaluate) on
// the dataset: the converted file when there is one, else the upload, with
// the size and sha256 the worker checks.
func (d *Dataset) TrainingFile() StoredFile {
	if d.Converted != nil {
		return *d.Converted
	}
	return StoredFile{Key: d.ObjectKey, SizeBytes: d.SizeBytes, SHA256: d.ContentSHA256}
}

// ConvertedKey is where validation writes the messages form of the file
// uploaded at datasetKey, beside it. It ends in .jsonl like the upload, so
// that the download grants that cover datasets/*.jsonl cover it too; the
// upload event that the write causes is recognised by IsConvertedKey and
// ignored.
func ConvertedKey(datasetKey string) string {
	return strings.TrimSuffix(datasetKey, ".jsonl") + convertedSuffix
}

const convertedSuffix = ".messages.jsonl"

// IsConvertedKey reports whether key is one ConvertedKey makes.
func IsConvertedKey(key string) bool {
	base, ok := strings.CutSuffix(key, convertedSuffix)
	if !ok {
		return false
	}
	_, _, err := ParseDatasetKey(base + ".jsonl")
	return err == nil
}

// Dataset limits.
const (
	// MaxDatasetBytes is the largest dataset accepted: 5 GiB, uploaded in
	// parts (uploads from the multipart threshold on are), and validated
	// in parts on every core of the validate function.
	MaxDatasetBytes = 5 << 30
	// MaxNameLength is the longest dataset or job name, in characters.
	MaxNameLength = 200
)

// ValidateName checks a user-given dataset or job name: 1..200 characters of
// printable text, no control characters, no path separators.
func ValidateName(field, name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return Errorf(EInvalid, "%s is required", field)
	case !utf8.ValidString(name):
		return Errorf(EInvalid, "%s must be valid UTF-8", field)
	case utf8.RuneCountInString(name) > MaxNameLength:
		return Errorf(EInvalid, "%s must be at most %d characters, got %d", field, MaxNameLength, utf8.RuneCountInString(name))
	case strings.ContainsAny(name, `/\`):
		return Errorf(EInvalid, "%s must not contain / or \\", field)
	}
	for i, r := range name {
		// No controls, no invisible format characters (bidi overrides
		// like U+202E that disguise a name, zero-width spaces), no
		// private-use ones or noncharacters (U+FFFE), no line breaks or
		// spaces but the plain one. Code points unassigned in Go's Unicode
		// tables are allowed: a newer emoji is not an invalid character.
		// The OpenAPI document's Name pattern says the same (its test
		// holds every code point).
		noncharacter := r >= 0xFDD0 && r <= 0xFDEF || r&0xFFFE == 0xFFFE
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Zl, unicode.Zp) || noncharacter || r == unicode.ReplacementChar || (unicode.IsSpace(r) && r != ' ') {
			return Errorf(EInvalid, "%s has a control, invisible or invalid character (U+%04X) at byte %d", field, r, i)
		}
	}
	return nil
}
