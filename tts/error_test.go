package tts

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// TestProviderErrors: a provider's error names it once, a timeout is named
// once, and both stay reachable with errors.Is/As.
func TestProviderErrors(t *testing.T) {
	if got := named("edge", io.ErrUnexpectedEOF).Error(); got != "tts edge: unexpected EOF" {
		t.Errorf("named = %q", got)
	}
	already := errorf("edge", "connect: %w", io.EOF)
	if got := named("edge", already); got != already || !errors.Is(got, io.EOF) {
		t.Errorf("named(named) = %v", got)
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	once := timeoutErr("azure", ctx, 30*time.Second, ctx.Err())
	twice := timeoutErr("azure", ctx, 30*time.Second, once)
	if want := "tts azure: timed out after 30s: context deadline exceeded"; once.Error() != want || twice.Error() != want {
		t.Errorf("timeoutErr = %q, again %q", once, twice)
	}
	var te *Error
	if !errors.As(twice, &te) || te.Provider != "azure" || !errors.Is(twice, context.DeadlineExceeded) {
		t.Errorf("timeout error lost its type: %v", twice)
	}
}
