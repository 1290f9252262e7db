package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// notFoundShape answers unknown paths and methods in the API's error shape
// instead of ServeMux's plain text.
func notFoundShape(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if allow := rec.Header().Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		switch rec.Code {
		case http.StatusMethodNotAllowed:
			writeJSON(w, rec.Code, api.ErrorBody{Error: pipeline.Error{Code: "method_not_allowed", Message: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)}})
		case http.StatusNotFound:
			writeJSON(w, rec.Code, api.ErrorBody{Error: pipeline.Error{Code: pipeline.ENotFound, Message: "no route " + r.Method + " " + r.URL.Path}})
		default:
			// A redirect (path cleaning) or similar: pass it on as is.
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		}
	})
}

// onlyItsMethods answers 405, with an Allow header listing them, a
// request to one of the literal paths with another method than its own
// (GET allows HEAD), whatever wildcard pattern would match the path.
func onlyItsMethods(literal map[string][]string, next http.Handler) http.Handler {
	allow := map[string]string{}
	for path, methods := range literal {
		ms := slices.Clone(methods)
		if slices.Contains(ms, http.MethodGet) {
			ms = append(ms, http.MethodHead)
		}
		slices.Sort(ms)
		allow[path] = strings.Join(slices.Compact(ms), ", ")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a, ok := allow[r.URL.Path]; ok && !slices.Contains(strings.Split(a, ", "), r.Method) {
			w.Header().Set("Allow", a)
			writeJSON(w, http.StatusMethodNotAllowed, api.ErrorBody{Error: pipeline.Error{Code: "method_not_allowed", Message: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)}})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic into a logged 500 in the error shape.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				writeError(w, r, s.log(), fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
