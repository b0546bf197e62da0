package fault

import "testing"

func TestFromHTTPStatus(t *testing.T) {
	for _, c := range []struct {
		status      int
		authInvalid bool
		want        Kind
	}{
		{401, false, Auth}, {403, false, Auth}, {400, true, Auth}, {400, false, BadRequest},
		{404, false, BadRequest}, {429, false, RateLimited}, {408, false, Timeout}, {504, false, Timeout},
		{500, false, Unavailable}, {503, false, Unavailable}, {502, false, Unavailable},
	} {
		if got := FromHTTPStatus(c.status, c.authInvalid); got != c.want {
			t.Errorf("FromHTTPStatus(%d, %v) = %v, want %v", c.status, c.authInvalid, got, c.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	for k, want := range map[Kind]bool{Unavailable: true, RateLimited: true, Timeout: true, Auth: false, BadRequest: false} {
		if k.Retryable() != want {
			t.Errorf("%v.Retryable() = %v, want %v", k, !want, want)
		}
	}
}
