package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"time"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/webhooks"
)

// The webhook routes register the caller's endpoints and show their
// delivery logs (package webhooks delivers). Without a webhooks service
// (Server.Webhooks nil) they answer 503.
func (s *Server) webhooks() (*webhooks.Service, error) {
	if s.Webhooks == nil {
		return nil, pipeline.Errorf(pipeline.EUnavailable, "webhooks are not configured on this server")
	}
	return s.Webhooks, nil
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, owner string) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	var req api.CreateWebhookRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	in := webhooks.EndpointInput{URL: req.URL, Description: req.Description}
	if req.EventTypes != nil {
		if len(*req.EventTypes) == 0 {
			return pipeline.Errorf(pipeline.EInvalid, "event_types must name at least one type; leave it out for every type")
		}
		in.EventTypes = *req.EventTypes
	}
	e, err := svc.Create(r.Context(), owner, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/webhooks/"+e.ID)
	writeJSON(w, http.StatusCreated, api.WebhookEndpointSecret{WebhookEndpointView: api.ViewWebhookEndpoint(e, s.now()), Secret: e.Secret})
	return nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, owner string) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	p, err := page(r)
	if err != nil {
		return err
	}
	list, next, err := svc.List(r.Context(), owner, p)
	if err != nil {
		return err
	}
	out := api.WebhookEndpointList{Webhooks: make([]api.WebhookEndpointView, 0, len(list)), NextCursor: next}
	for _, e := range list {
		out.Webhooks = append(out.Webhooks, api.ViewWebhookEndpoint(e, s.now()))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, owner string) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	e, err := svc.Get(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ViewWebhookEndpoint(e, s.now()))
	return nil
}

func (s *Server) updateWebhook(w http.ResponseWriter, r *http.Request, owner string) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	var req api.UpdateWebhookRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	e, err := svc.Update(r.Context(), owner, r.PathValue("id"), webhooks.EndpointPatch{URL: req.URL, Description: req.Description,
		EventTypes: req.EventTypes, Disabled: req.Disabled})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ViewWebhookEndpoint(e, s.now()))
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, owner string) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	if err := svc.Delete(r.Context(), owner, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rotateWebhook takes an optional body: none keeps the old secret for
// webhooks.DefaultOverlap.
func (s *Server) rotateWebhook(w http.ResponseWriter, r *http.Request, owner string) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return decodeError(err)
	}
	var req api.RotateWebhookRequest
	if len(bytes.TrimSpace(body)) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
	}
	var overlap *time.Duration
	if req.OverlapSeconds != nil {
		if *req.OverlapSeconds < 0 || *req.OverlapSeconds > int64(webhooks.MaxOverlap/time.Second) {
			return pipeline.Errorf(pipeline.EInvalid, "overlap_seconds must be between 0 and %d", int64(webhooks.MaxOverlap/time.Second))
		}
		o := time.Duration(*req.OverlapSeconds) * time.Second
		overlap = &o
	}
	e, err := svc.Rotate(r.Context(), owner, r.PathValue("id"), overlap)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.WebhookEndpointSecret{WebhookEndpointView: api.ViewWebhookEndpoint(e, s.now()), Secret: e.Secret})
	return nil
}

func (s *Server) listWebhookDeliveries(w http.ResponseWriter, r *http.Request, owner string) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	p, err := page(r)
	if err != nil {
		return err
	}
	list, next, err := svc.Deliveries(r.Context(), owner, r.PathValue("id"), p)
	if err != nil {
		return err
	}
	out := api.WebhookDeliveryList{Deliveries: make([]api.WebhookDeliveryView, 0, len(list)), NextCursor: next}
	for _, d := range list {
		out.Deliveries = append(out.Deliveries, api.ViewWebhookDelivery(d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getWebhookDelivery(w http.ResponseWriter, r *http.Request, owner string) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	d, err := svc.Delivery(r.Context(), owner, r.PathValue("id"), r.PathValue("delivery_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ViewWebhookDelivery(d))
	return nil
}

// redeliverWebhook queues a delivery again: 202, tried at once in the
// background.
func (s *Server) redeliverWebhook(w http.ResponseWriter, r *http.Request, owner string) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	d, err := svc.Redeliver(r.Context(), owner, r.PathValue("id"), r.PathValue("delivery_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, api.ViewWebhookDelivery(d))
	return nil
}
