package httpapi

import "net/http"

// deleteJob deletes an ended job with its adapter, checkpoints, events
// and metric points (pipeline.Lifecycle.DeleteJob says what and in which
// order); a job that has not ended is a 409.
func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request, owner string) error {
	if err := s.Jobs.DeleteJob(r.Context(), owner, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
