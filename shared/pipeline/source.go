package pipeline

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ImportSource is where an imported dataset's file comes from: an https
// URL the server downloads, or an object in an S3 bucket and prefix the
// deployment allows (AllowedS3Prefixes). Exactly one of URL and Bucket is
// set.
type ImportSource struct {
	URL    string `json:"url,omitempty"`
	Bucket string `json:"bucket,omitempty"`
	Key    string `json:"key,omitempty"`
}

// Import source limits.
const (
	// MaxSourceURLLength is the longest URL an import accepts.
	MaxSourceURLLength = 2048
	// MaxS3KeyLength is S3's longest key, in bytes.
	MaxS3KeyLength = 1024
)

// IsS3 reports whether the source is an S3 object.
func (s ImportSource) IsS3() bool { return s.Bucket != "" }

// String is the source as a user writes it: the URL, or s3://bucket/key.
func (s ImportSource) String() string {
	if s.IsS3() {
		return "s3://" + s.Bucket + "/" + s.Key
	}
	return s.URL
}

// ParseImportSource reads a user-given source: "s3://bucket/key", or an
// http(s) URL. It checks the shape only; which URLs the server may reach
// is the network policy's (package netguard), and which buckets the
// deployment's (AllowedS3Prefixes).
func ParseImportSource(raw string) (ImportSource, error) {
	if !utf8.ValidString(raw) {
		return ImportSource{}, Errorf(EInvalid, "source must be valid UTF-8")
	}
	if rest, ok := cutPrefixFold(raw, "s3://"); ok {
		bucket, key, ok := strings.Cut(rest, "/")
		if !ok || key == "" {
			return ImportSource{}, Errorf(EInvalid, "source %q: an S3 source is s3://bucket/key, with a key", raw)
		}
		if err := checkBucketName(bucket); err != nil {
			return ImportSource{}, Errorf(EInvalid, "source %q: %v", raw, err)
		}
		if err := checkS3Key(key); err != nil {
			return ImportSource{}, Errorf(EInvalid, "source %q: %v", raw, err)
		}
		return ImportSource{Bucket: bucket, Key: key}, nil
	}
	if len(raw) > MaxSourceURLLength {
		return ImportSource{}, Errorf(EInvalid, "source is %d bytes long: a URL may have at most %d", len(raw), MaxSourceURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return ImportSource{}, Errorf(EInvalid, "source %q must be an https URL or s3://bucket/key", raw)
	}
	for i, r := range raw {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return ImportSource{}, Errorf(EInvalid, "source has a space or control character (U+%04X) at byte %d", r, i)
		}
	}
	return ImportSource{URL: raw}, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// checkBucketName applies S3's bucket naming rules: 3..63 lower-case
// letters, digits, dots and hyphens, starting and ending with a letter or
// digit.
func checkBucketName(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-'
		if !ok {
			return fmt.Errorf("bucket name %q may hold only lower-case letters, digits, dots and hyphens", b)
		}
	}
	if strings.ContainsAny(b[:1]+b[len(b)-1:], ".-") || strings.Contains(b, "..") {
		return fmt.Errorf("bucket name %q must start and end with a letter or digit, with no two dots in a row", b)
	}
	return nil
}

// checkS3Key refuses keys S3 would refuse and keys with control
// characters (which no dataset export needs and which make logs lie).
func checkS3Key(k string) error {
	if len(k) > MaxS3KeyLength {
		return fmt.Errorf("key is %d bytes: S3 keys have at most %d", len(k), MaxS3KeyLength)
	}
	for i, r := range k {
		if unicode.IsControl(r) {
			return fmt.Errorf("key has a control character (U+%04X) at byte %d", r, i)
		}
	}
	return nil
}

// S3Prefix is one bucket and key prefix the deployment lets users import
// from (a training-files store, say). Prefix "" is the whole bucket.
type S3Prefix struct {
	Bucket string
	Prefix string
}

func (p S3Prefix) String() string { return p.Bucket + "/" + p.Prefix }

// ParseS3Prefixes reads the deployment's allowed import prefixes: a
// comma-separated list of bucket/prefix entries (blanks ignored), as the
// template's ImportS3Prefixes parameter gives them. A prefix that names a
// folder should end with "/": "bucket/exports" also allows
// "bucket/exports-old/...", as the IAM statement built from it would.
func ParseS3Prefixes(s string) ([]S3Prefix, error) {
	var out []S3Prefix
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		entry = strings.TrimPrefix(entry, "s3://")
		bucket, prefix, slash := strings.Cut(entry, "/")
		if !slash {
			// The role's grant is arn:aws:s3:::<entry>*: without its slash
			// a bucket name would match every bucket it begins.
			return nil, fmt.Errorf("import prefix %q: write %s/ for the whole bucket (each entry is bucket/prefix)", entry, entry)
		}
		if err := checkBucketName(bucket); err != nil {
			return nil, fmt.Errorf("import prefix %q: %w", entry, err)
		}
		if err := checkS3Key(prefix); err != nil {
			return nil, fmt.Errorf("import prefix %q: %w", entry, err)
		}
		if strings.ContainsAny(prefix, "*?") {
			return nil, fmt.Errorf("import prefix %q: no wildcards; a prefix allows every key that starts with it", entry)
		}
		out = append(out, S3Prefix{Bucket: bucket, Prefix: prefix})
	}
	return out, nil
}

// AllowedS3 reports whether the source is an S3 object under one of the
// prefixes.
func AllowedS3(prefixes []S3Prefix, src ImportSource) bool {
	if !src.IsS3() {
		return false
	}
	for _, p := range prefixes {
		if p.Bucket == src.Bucket && strings.HasPrefix(src.Key, p.Prefix) {
			return true
		}
	}
	return false
}

// ImportDeadline is how long a dataset may stay importing after its last
// change before it is taken for failed: longer than every try of the copy
// with the waits between them (on AWS: 3 tries of up to 15 minutes, 90
// minutes apart). An import whose every try crashed before it could say
// why (its message went to the dead-letter queue) ends invalid when it is
// next read, instead of importing for ever.
const ImportDeadline = 6 * time.Hour

// EndStaleImport ends d invalid when it has been importing since longer
// than ImportDeadline before now, and reports whether it did.
func EndStaleImport(d *Dataset, now time.Time) bool {
	if d.Status != DatasetImporting || now.Sub(d.UpdatedAt) <= ImportDeadline {
		return false
	}
	d.Status, d.UpdatedAt = DatasetInvalid, now
	d.Error = fmt.Sprintf("the import did not finish: no copy was recorded within %s; import it again, or upload the file", ImportDeadline)
	return true
}
