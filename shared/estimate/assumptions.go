package estimate

// Version names this set of assumptions. It changes whenever a constant
// below or a figure of the catalog's built-in throughput table changes, so
// an estimate stored with a job can be compared with the job's actual
// duration and cost knowing which assumptions produced it.
const Version = "2026-12-06.2"

// span is one assumption's value at the fast/cheap end (low), the expected
// value, and the slow/expensive end (high).
type span struct{ low, expected, high float64 }

func (s span) at(e end) float64 {
	switch e {
	case low:
		return s.low
	case high:
		return s.high
	}
	return s.expected
}

type end int

const (
	low end = iota
	expected
	high
)

var ends = [...]end{low, expected, high}

var (
	// queueSeconds: waiting in the endpoint's queue for a worker; not
	// billed. Assumes a worker slot is free (endpoint max workers 3 by
	// default); a busy endpoint queues longer.
	queueSeconds = span{0, 15, 300}

	// coldStartSeconds: from worker start (billing starts) to the handler
	// running: container start with the image cached and FlashBoot on,
	// up to a host that pulls the multi-GB image first.
	coldStartSeconds = span{10, 45, 300}

	// startupSeconds: Python imports, CUDA initialisation, dataset
	// download, and compiling kernels (Triton, fla) on the first step.
	startupSeconds = span{20, 45, 120}

	// tokenizeTokensPerSecond: the worker tokenizes the dataset before
	// training (fast tokenizer, chat template).
	tokenizeTokensPerSecond = span{1e6, 5e5, 2e5}

	// paddingFraction: extra tokens from padding each micro-batch to its
	// longest sequence, with micro-batches of length-sorted examples and
	// no packing (WORKER.md: packing leaks across samples in Qwen3-Next),
	// when the dataset's length distribution is unknown (packEpoch
	// simulates it otherwise). Scaled by 1 − 1 / examples per micro-batch:
	// a micro-batch of one has no padding.
	paddingFraction = span{0, 0.10, 0.30}

	// saveSeconds and uploadBytesPerSecond: writing the adapter and
	// uploading it to S3 from the worker.
	saveSeconds          = span{5, 15, 60}
	uploadBytesPerSecond = span{100e6, 50e6, 20e6}
)

const (
	// adapterFileBytesPerParameter: the adapter is saved in fp32
	// safetensors.
	adapterFileBytesPerParameter = 4

	// idleTimeoutSeconds: RunPod keeps (and bills) a worker for the
	// endpoint's idle timeout after its last job; 5 s is the default.
	idleTimeoutSeconds = 5

	// executionTimeoutFactor scales the slow-end execution time into the
	// suggested policy.executionTimeout; maxExecutionSeconds is RunPod's
	// limit (7 days).
	executionTimeoutFactor = 1.25
	maxExecutionSeconds    = 7 * 24 * 3600
	minExecutionSeconds    = 600
)
