package lobster

/*
#include "lobster.h"
*/
import "C"

// Code is a lobster_result: the outcome of a call. Values never change meaning.
type Code uint32

// The codes of lobster.h, in its blocks: 0 success, 100.. failures of the
// C boundary, 1000.. the core's error kinds.
const (
	CodeOK                 Code = C.LOBSTER_RESULT_OK
	CodePanic              Code = C.LOBSTER_RESULT_PANIC
	CodeNullParameter      Code = C.LOBSTER_RESULT_NULL_PARAMETER
	CodeInvalidUTF8        Code = C.LOBSTER_RESULT_INVALID_UTF8
	CodeInteriorNul        Code = C.LOBSTER_RESULT_INTERIOR_NUL
	CodeRuntimeUnavailable Code = C.LOBSTER_RESULT_RUNTIME_UNAVAILABLE
	CodeNotFound           Code = C.LOBSTER_RESULT_NOT_FOUND
	CodeAlreadyExists      Code = C.LOBSTER_RESULT_ALREADY_EXISTS
	CodeInvalidArgument    Code = C.LOBSTER_RESULT_INVALID_ARGUMENT
	CodeInvalidState       Code = C.LOBSTER_RESULT_INVALID_STATE
	CodePermissionDenied   Code = C.LOBSTER_RESULT_PERMISSION_DENIED
	CodeUnsupported        Code = C.LOBSTER_RESULT_UNSUPPORTED
	CodeTimeout            Code = C.LOBSTER_RESULT_TIMEOUT
	CodeExhausted          Code = C.LOBSTER_RESULT_EXHAUSTED
	CodeCorrupt            Code = C.LOBSTER_RESULT_CORRUPT
	CodeHostFailure        Code = C.LOBSTER_RESULT_HOST_FAILURE
	CodeGuestFailure       Code = C.LOBSTER_RESULT_GUEST_FAILURE
	CodeInternal           Code = C.LOBSTER_RESULT_INTERNAL
)

// String is the code's stable snake_case name ("not_found", ...).
func (c Code) String() string {
	return C.GoString(C.lobster_result_name(C.uint32_t(c)))
}

// Error is a failed lobster call: its code, the code's stable name and the
// message (the whole cause chain).
type Error struct {
	Code    Code
	Kind    string
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "lobster: " + e.Kind
	}
	return e.Message
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, lobster.ErrNotFound) matches every not-found error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func sentinel(c Code) *Error { return &Error{Code: c, Kind: c.String()} }

// Sentinel errors, one per code; compare with errors.Is.
var (
	ErrPanic              = sentinel(CodePanic)
	ErrNullParameter      = sentinel(CodeNullParameter)
	ErrInvalidUTF8        = sentinel(CodeInvalidUTF8)
	ErrInteriorNul        = sentinel(CodeInteriorNul)
	ErrRuntimeUnavailable = sentinel(CodeRuntimeUnavailable)
	ErrNotFound           = sentinel(CodeNotFound)
	ErrAlreadyExists      = sentinel(CodeAlreadyExists)
	ErrInvalidArgument    = sentinel(CodeInvalidArgument)
	ErrInvalidState       = sentinel(CodeInvalidState)
	ErrPermissionDenied   = sentinel(CodePermissionDenied)
	ErrUnsupported        = sentinel(CodeUnsupported)
	ErrTimeout            = sentinel(CodeTimeout)
	ErrExhausted          = sentinel(CodeExhausted)
	ErrCorrupt            = sentinel(CodeCorrupt)
	ErrHostFailure        = sentinel(CodeHostFailure)
	ErrGuestFailure       = sentinel(CodeGuestFailure)
	ErrInternal           = sentinel(CodeInternal)
)

// errorFrom turns a failed call's code and error object into an *Error and
// frees the object. It returns nil for success.
func errorFrom(code C.lobster_result, cerr *C.lobster_error) error {
	if Code(code) == CodeOK {
		return nil
	}
	e := &Error{Code: Code(code), Kind: Code(code).String()}
	if cerr != nil {
		e.Kind = C.GoString(C.lobster_error_kind(cerr))
		e.Message = C.GoString(C.lobster_error_message(cerr))
		C.lobster_error_free(cerr)
	}
	return e
}
