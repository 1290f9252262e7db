package httpapi

import (
	"net/http"
	"strings"
)

// Function names: each Lambda serves the routes of its function; the local
// stack serves them all.
const (
	FnUploads  = "uploads"
	FnEstimate = "estimate"
	FnJobs     = "jobs"
	FnWebhook  = "webhook"
)

// Route is one endpoint of the API.
type Route struct {
	Function string
	Method   string
	Path     string
	handler  http.Handler
}

// Routes lists the whole API in one place.
func (s *Server) Routes() []Route {
	return []Route{
		{FnUploads, "POST", "/v1/datasets", s.authed(s.createDataset)},
		{FnUploads, "POST", "/v1/datasets/import", s.authed(s.importDataset)},
		{FnUploads, "GET", "/v1/datasets", s.authed(s.listDatasets)},
		{FnUploads, "GET", "/v1/datasets/{id}", s.authed(s.getDataset)},
		{FnUploads, "GET", "/v1/datasets/{id}/report", s.authed(s.getReport)},
		{FnUploads, "POST", "/v1/datasets/{id}/complete", s.authed(s.completeDataset)},
		{FnUploads, "DELETE", "/v1/datasets/{id}", s.authed(s.deleteDataset)},

		{FnEstimate, "GET", "/v1/presets", s.authed(s.listPresets)},
		{FnEstimate, "GET", "/v1/gpus", s.authed(s.listGPUs)},
		{FnEstimate, "GET", "/v1/models", s.authed(s.listModels)},
		{FnEstimate, "POST", "/v1/estimates", s.authed(s.createEstimate)},

		{FnJobs, "POST", "/v1/jobs", s.authed(s.createJob)},
		{FnJobs, "GET", "/v1/jobs", s.authed(s.listJobs)},
		{FnJobs, "GET", "/v1/jobs/{id}", s.authed(s.getJob)},
		{FnJobs, "DELETE", "/v1/jobs/{id}", s.authed(s.deleteJob)},
		{FnJobs, "POST", "/v1/jobs/{id}/cancel", s.authed(s.cancelJob)},
		{FnJobs, "GET", "/v1/jobs/{id}/events", s.authed(s.listEvents)},
		{FnJobs, "GET", "/v1/jobs/{id}/metrics", s.authed(s.listMetrics)},
		{FnJobs, "GET", "/v1/jobs/{id}/artifacts", s.authed(s.listArtifacts)},
		{FnJobs, "GET", "/v1/notifications", s.authed(s.listNotifications)},

		{FnJobs, "POST", "/v1/webhooks", s.authed(s.createWebhook)},
		{FnJobs, "GET", "/v1/webhooks", s.authed(s.listWebhooks)},
		{FnJobs, "GET", "/v1/webhooks/{id}", s.authed(s.getWebhook)},
		{FnJobs, "PATCH", "/v1/webhooks/{id}", s.authed(s.updateWebhook)},
		{FnJobs, "DELETE", "/v1/webhooks/{id}", s.authed(s.deleteWebhook)},
		{FnJobs, "POST", "/v1/webhooks/{id}/rotate", s.authed(s.rotateWebhook)},
		{FnJobs, "GET", "/v1/webhooks/{id}/deliveries", s.authed(s.listWebhookDeliveries)},
		{FnJobs, "GET", "/v1/webhooks/{id}/deliveries/{delivery_id}", s.authed(s.getWebhookDelivery)},
		{FnJobs, "POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", s.authed(s.redeliverWebhook)},

		{FnWebhook, "POST", "/v1/callbacks/worker", http.HandlerFunc(s.workerCallback)},
		{FnWebhook, "POST", "/v1/callbacks/runpod/{token}", http.HandlerFunc(s.runpodWebhook)},
	}
}

// Handler serves the routes of the named functions (all when none is
// named), /healthz, and the error shape for anything else.
func (s *Server) Handler(functions ...string) http.Handler {
	want := map[string]bool{}
	for _, f := range functions {
		want[f] = true
	}
	mux := http.NewServeMux()
	// A literal path is its own resource even where a wildcard pattern
	// also matches it (/v1/datasets/import and /v1/datasets/{id}): its
	// methods alone are allowed on it.
	literal := map[string][]string{}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /openapi.json", s.serveOpenAPI)
	for _, rt := range s.Routes() {
		if len(want) == 0 || want[rt.Function] {
			mux.Handle(rt.Method+" "+rt.Path, rt.handler)
			if !strings.Contains(rt.Path, "{") {
				literal[rt.Path] = append(literal[rt.Path], rt.Method)
			}
		}
	}
	return s.recoverer(onlyItsMethods(literal, notFoundShape(mux)))
}
