package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// MaxCallbackBytes bounds a worker callback's body.
const MaxCallbackBytes = 256 << 10

// callbackError answers a refused callback: 401 for authentication, 409
// with "stop" for a superseded attempt, 400 for a malformed body.
func (s *Server) callbackError(w http.ResponseWriter, r *http.Request, status int, code, msg, action string) {
	s.log().WarnContext(r.Context(), "callback refused", "status", status, "code", code, "reason", msg, "remote", r.RemoteAddr)
	writeJSON(w, status, api.CallbackAnswer{Action: action, Error: &pipeline.Error{Code: code, Message: msg}})
}

// callbackRefused answers the error of a callback the job's lifecycle
// refused, and reports whether there was one: a job that is gone or an
// attempt that was superseded tells the worker to stop, a callback the
// lifecycle cannot apply is a 400, anything else an error the worker
// retries.
func (s *Server) callbackRefused(w http.ResponseWriter, r *http.Request, err error) bool {
	switch pipeline.ErrorCode(err) {
	case "":
		return false
	case pipeline.ENotFound:
		// 410, not 404: a worker stops on 409 and 410 (and takes a 404 to
		// a urls request for "no URLs here"): the job was deleted.
		s.callbackError(w, r, http.StatusGone, pipeline.ENotFound, "no such job", "stop")
	case pipeline.EConflict:
		s.callbackError(w, r, http.StatusConflict, pipeline.EConflict, pipeline.ErrorMessage(err), "stop")
	case pipeline.EInvalid:
		s.callbackError(w, r, http.StatusBadRequest, pipeline.EInvalid, pipeline.ErrorMessage(err), "")
	default:
		writeError(w, r, s.log(), err) // the worker retries
	}
	return true
}

// workerCallback receives the worker's signed callbacks: it authenticates
// and decodes them, and the job's lifecycle applies them.
func (s *Server) workerCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxCallbackBytes))
	if err != nil {
		s.callbackError(w, r, http.StatusRequestEntityTooLarge, pipeline.ETooLarge, fmt.Sprintf("callback body over %d bytes", MaxCallbackBytes), "")
		return
	}
	owner, err := pipeline.CallbackOwner(r.URL.Query().Get("o"))
	if err != nil {
		s.callbackError(w, r, http.StatusUnauthorized, pipeline.EUnauthorized, pipeline.ErrorMessage(err), "")
		return
	}
	// The signature is checked first, with the secret of the job the body
	// names; only a verified body is parsed in full.
	var head struct {
		JobID string `json:"job_id"`
	}
	if json.Unmarshal(body, &head) != nil || !contract.ValidJobID(head.JobID) {
		s.callbackError(w, r, http.StatusUnauthorized, pipeline.EUnauthorized, "callback is not signed for a known job", "")
		return
	}
	if verr := contract.Verify(contract.DeriveSecret(s.CallbackSecret, head.JobID), r.Header, body, s.now()); verr != nil {
		s.callbackError(w, r, http.StatusUnauthorized, pipeline.EUnauthorized, verr.Error(), "")
		return
	}
	cb, payload, err := contract.ParseCallback(body)
	if err != nil {
		status := http.StatusBadRequest
		if isURLRequest(body) {
			// 400 to a urls callback tells a worker that this server hands
			// out no URLs (an older one: an unknown callback type); a urls
			// request this server understood but finds wrong is a 422, which
			// fails only that request.
			status = http.StatusUnprocessableEntity
		}
		s.callbackError(w, r, status, pipeline.EInvalid, err.Error(), "")
		return
	}
	id := r.Header.Get(contract.HeaderID)
	if jobID, attempt, seq, perr := contract.ParseWebhookID(id); perr != nil || jobID != cb.JobID || attempt != cb.Attempt || seq != cb.Seq {
		status := http.StatusBadRequest
		if cb.Type == contract.TypeURLs {
			status = http.StatusUnprocessableEntity // a 400 would turn the worker's URL requests off
		}
		s.callbackError(w, r, status, pipeline.EInvalid, "webhook-id does not match the body's job_id, attempt and seq", "")
		return
	}
	if req, ok := payload.(*contract.URLRequest); ok {
		s.answerURLs(w, r, owner, cb, req)
		return
	}
	j, err := s.Jobs.ApplyCallback(ctx, owner, cb, payload, id, body)
	if s.callbackRefused(w, r, err) {
		return
	}
	answer := api.CallbackAnswer{Action: "continue"}
	if j.WorkerShouldStop() {
		answer = api.CallbackAnswer{Action: "stop", Reason: fmt.Sprintf("job is %s", j.Status)}
	}
	writeJSON(w, http.StatusOK, answer)
}

// answerURLs answers a verified urls callback with presigned URLs in the
// 200 body; it is fenced like every callback and changes no job. A
// service that hands out no URLs answers 400, as a server that does not
// know the callback type does (the worker then uses its spec's URLs for
// the rest of the run); a request it cannot serve (a file
// the job does not have, an upload without its size) is a 422, which
// fails only that request.
func (s *Server) answerURLs(w http.ResponseWriter, r *http.Request, owner string, cb *contract.Callback, req *contract.URLRequest) {
	j, ans, err := s.Jobs.AnswerURLs(r.Context(), owner, cb, req)
	switch {
	case errors.Is(err, pipeline.ErrNoURLs):
		s.callbackError(w, r, http.StatusBadRequest, pipeline.EInvalid, pipeline.ErrorMessage(err), "")
		return
	case pipeline.ErrorCode(err) == pipeline.EInvalid:
		s.callbackError(w, r, http.StatusUnprocessableEntity, pipeline.EInvalid, pipeline.ErrorMessage(err), "")
		return
	case s.callbackRefused(w, r, err):
		return
	}
	if j.WorkerShouldStop() {
		ans.Action, ans.Reason = "stop", fmt.Sprintf("job is %s", j.Status)
	}
	writeJSON(w, http.StatusOK, ans)
}

// isURLRequest reports whether a callback body is of type urls.
func isURLRequest(body []byte) bool {
	var head struct {
		Type contract.CallbackType `json:"type"`
	}
	return json.Unmarshal(body, &head) == nil && head.Type == contract.TypeURLs
}

// RunChecker confirms a run's outcome with the GPU provider and repairs the
// job's state: the RunPod webhook's body is only a hint.
type RunChecker interface {
	CheckJob(ctx context.Context, owner, jobID string) error
}

// runpodWebhook receives RunPod's completion webhook. The token in the
// path authenticates it; the body is not trusted: the outcome is confirmed
// with RunPod's /status. RunPod expects a 200.
func (s *Server) runpodWebhook(w http.ResponseWriter, r *http.Request) {
	owner, jobID, attempt, err := pipeline.ParseWebhookToken(s.CallbackSecret, r.PathValue("token"))
	if err != nil {
		s.callbackError(w, r, http.StatusUnauthorized, pipeline.EUnauthorized, pipeline.ErrorMessage(err), "")
		return
	}
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, MaxCallbackBytes))
	j, err := s.Store.GetJob(r.Context(), owner, jobID)
	if pipeline.ErrorCode(err) == pipeline.ENotFound {
		// Deleted meanwhile: nothing to do, and RunPod should not retry.
		writeJSON(w, http.StatusOK, api.CallbackAnswer{Action: "stop", Reason: "no such job"})
		return
	}
	if err != nil {
		writeError(w, r, s.log(), err)
		return
	}
	if j.Attempt != attempt {
		writeJSON(w, http.StatusOK, api.CallbackAnswer{Action: "stop", Reason: "superseded attempt"})
		return
	}
	if s.Runs == nil {
		writeJSON(w, http.StatusOK, api.CallbackAnswer{Action: "continue", Reason: "noted; reconciliation will confirm"})
		return
	}
	if err := s.Runs.CheckJob(r.Context(), owner, jobID); err != nil {
		// RunPod retries the webhook on a non-200: let it.
		writeError(w, r, s.log(), err)
		return
	}
	writeJSON(w, http.StatusOK, api.CallbackAnswer{Action: "continue"})
}
