package chat

import "fmt"

// Error codes of the error frames a Handler sends.
const (
	codeInvalidJSON      = "invalid_json"
	codeBinaryFrame      = "binary_frame"
	codeMissingType      = "missing_type"
	codeUnknownType      = "unknown_type"
	codeMissingField     = "missing_field"
	codeInvalidField     = "invalid_field"
	codeClientIDMismatch = "client_id_mismatch"
	codeNotBound         = "not_bound"
	codeForbidden        = "forbidden"
	codeTokenRequired    = "token_required"
	codeTokenInvalid     = "token_invalid"
	codeTokenExpired     = "token_expired"
	codeTokenMismatch    = "token_mismatch"
	codeUnavailable      = "unavailable"
	codeStoreFailed      = "store_failed"
)

// frameError is a request the Handler refuses: it becomes an error frame sent
// to the connection that made the request. err, when set, is the underlying
// failure (an API error); it is logged, never sent to the client.
type frameError struct {
	code    string
	message string
	cmid    string
	err     error
}

// withCMID names the client message id the error is about.
func (e *frameError) withCMID(cmid string) *frameError {
	e.cmid = cmid
	return e
}

func (e *frameError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s: %s: %v", e.code, e.message, e.err)
	}
	return e.code + ": " + e.message
}

func (e *frameError) Unwrap() error { return e.err }

func newFrameError(code, message string) *frameError {
	return &frameError{code: code, message: message}
}

func errMissingField(field string) *frameError {
	return newFrameError(codeMissingField, fmt.Sprintf("field %q is required", field))
}

func errInvalidField(field, want string) *frameError {
	return newFrameError(codeInvalidField, fmt.Sprintf("field %q must be %s", field, want))
}

// errorFrame is the wire form of a frameError.
type errorFrame struct {
	Type    string `json:"type"` // always "error"
	Code    string `json:"code"`
	Message string `json:"message"`
	// Ref is the type of the request that failed, when it is known.
	Ref string `json:"ref,omitempty"`
	// CMID is the client message id of the say that failed, when it had one.
	CMID string `json:"cmid,omitempty"`
}
