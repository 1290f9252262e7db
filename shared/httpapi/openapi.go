package httpapi

import (
	_ "embed"
	"net/http"
	"strconv"
)

// OpenAPIDocument is the OpenAPI 3.1 document of the HTTP API v1: the
// source of truth for its routes and shapes, which the tests hold the
// handlers to.
//
//go:embed openapi.json
var OpenAPIDocument []byte

// serveOpenAPI answers GET /openapi.json with the document.
func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(OpenAPIDocument)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(OpenAPIDocument)
}
