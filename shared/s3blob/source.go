package s3blob

import (
	"context"
	"errors"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// Sources reads objects of other buckets than the service's own: the
// buckets and prefixes an operator lets users import datasets from. Which
// ones may be read is the caller's check (pipeline.AllowedS3) and the
// role's (template.yaml grants s3:GetObject on those prefixes only).
type Sources struct {
	Client *s3.Client
}

// OpenObject streams bucket/key and returns its size. A missing object is
// ENotFound; a refused read (the bucket's policy or the role's) is
// EPrecondition, so that an import says what is wrong instead of retrying.
func (s Sources) OpenObject(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if code := apiErrorCode(err); code == "AccessDenied" || code == "Forbidden" || code == "NoSuchBucket" {
			return nil, 0, pipeline.Errorf(pipeline.EPrecondition, "s3://%s/%s cannot be read (%s): it does not exist, or the bucket's policy does not let this deployment read it", bucket, key, code)
		}
		return nil, 0, translate(err, "open", "s3://"+bucket+"/"+key)
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return out.Body, size, nil
}

// apiErrorCode is the S3 error code of err, or "".
func apiErrorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}
