package server

import (
	"encoding/json"
	"net/http"

	"github.com/nexy-server/nexy/internal/buildinfo"
)

// routes is every HTTP endpoint, served on the plaintext HTTP listener and
// on the public TLS port alike.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	if s.feed != nil {
		mux.Handle("/updates/", s.feed)
	}
	return mux
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=30")
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "OK", "server_version": buildinfo.Current().Version, "commit": buildinfo.Revision()})
}
