package lobster

// The C side of the progress callback, apart from progress.go because
// that file's //export allows only declarations in its preamble.

/*
// lobsterGoProgress is exported by progress.go (cgo declares its string
// parameter without const).
extern void lobsterGoProgress(char *event, void *context);

// lobsterProgressTrampoline is the lobster_progress_fn every *WithProgress
// call passes: it forwards the event and context to Go.
void lobsterProgressTrampoline(const char *event, void *context) {
	lobsterGoProgress((char *)event, context);
}
*/
import "C"
