package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// apiError is an error with a status and a message that is safe to show the
// client. The cause, which may hold detail not meant for clients, is logged.
type apiError struct {
	status     int
	msg        string
	cause      error
	retryAfter string // seconds; for 503, "5" when empty
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// internal wraps an unexpected failure: the client sees a generic message
// naming what failed; the log gets the cause.
func internal(what string, cause error) *apiError {
	return &apiError{status: http.StatusInternalServerError, msg: what + " failed", cause: cause}
}

func unavailable(what string, cause error) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, msg: what, cause: cause}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away; nothing left to do
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err *apiError) {
	if err.cause != nil {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", err.status, "error", err.cause)
	}
	if err.status == http.StatusServiceUnavailable {
		retry := err.retryAfter
		if retry == "" {
			retry = "5"
		}
		w.Header().Set("Retry-After", retry)
	}
	writeJSON(w, err.status, map[string]string{"error": err.msg})
}

// decode reads a JSON body, bounded by serve, into v, rejecting unknown fields and
// trailing data.
func decode(r *http.Request, v any) *apiError {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, "content type %q not supported, send application/json", ct)
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", maxBody)
		}
		return errorf(http.StatusBadRequest, "reading the request body failed: %v", err)
	}
	if aerr := checkKeys(body, v); aerr != nil {
		return aerr
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return errorf(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", maxBody)
		case errors.As(err, &syntax):
			return errorf(http.StatusBadRequest, "invalid JSON at byte %d: %v", syntax.Offset, err)
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return errorf(http.StatusBadRequest, "invalid JSON: field %q has the wrong type (%s)", typeErr.Field, typeErr.Value)
		case errors.As(err, &typeErr):
			return errorf(http.StatusBadRequest, "invalid JSON: the request body must be an object")
		default:
			return errorf(http.StatusBadRequest, "invalid JSON: %v", err)
		}
	}
	// Decoder.More reports false before a stray '}' or ']', so one more
	// token is read instead. Anything but the end of the body is trailing
	// data.
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "invalid JSON: data after the request object")
	}
	return nil
}

// checkKeys rejects a top-level member that appears twice or whose name
// matches a field only without regard to case. encoding/json accepts both
// (the last duplicate wins, and "SPIFFE_ID" fills spiffe_id), so a proxy or
// log that reads the body differently would see another request than ward.
func checkKeys(body []byte, v any) *apiError {
	fields := map[string]bool{}
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		fields[name] = true
	}

	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return errorf(http.StatusBadRequest, "invalid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errorf(http.StatusBadRequest, "invalid JSON: the request body must be an object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errorf(http.StatusBadRequest, "invalid JSON: %v", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return errorf(http.StatusBadRequest, "invalid JSON: field %s appears twice", quote(key))
		}
		seen[key] = true
		if !fields[key] {
			return errorf(http.StatusBadRequest, "invalid JSON: unknown field %s", quote(key))
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return errorf(http.StatusBadRequest, "invalid JSON: %v", err)
		}
	}
	return nil
}

// minTTL is the shortest credential lifetime accepted.
const minTTL = time.Second

// parseTTL reads a TTL given as a Go duration ("10m") or whole seconds
// ("600"); empty means def. A TTL above max is rejected, not shortened, so a
// client never receives a credential shorter-lived than it asked for without
// knowing.
func parseTTL(raw string, def, max time.Duration) (time.Duration, *apiError) {
	if raw == "" {
		return def, nil
	}
	ttl, err := time.ParseDuration(raw)
	if err != nil {
		secs, serr := strconv.ParseInt(raw, 10, 64)
		if serr != nil {
			return 0, errorf(http.StatusBadRequest, "invalid ttl %q, want a duration such as 10m or a number of seconds", raw)
		}
		// Reject before multiplying, which would overflow into a small or
		// negative duration.
		if secs > int64(max/time.Second) {
			return 0, errorf(http.StatusBadRequest, "ttl %ss exceeds the maximum %s", raw, max)
		}
		ttl = time.Duration(secs) * time.Second
	}
	if ttl < minTTL {
		return 0, errorf(http.StatusBadRequest, "invalid ttl %q, must be at least %s", raw, minTTL)
	}
	if ttl > max {
		return 0, errorf(http.StatusBadRequest, "ttl %s exceeds the maximum %s", ttl, max)
	}
	return ttl, nil
}

// clip shortens s for a message, so a long request value is not echoed whole.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func quote(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strconv.Quote(s)
}
