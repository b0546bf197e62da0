package llmtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSplitEventsRoundTrip(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "llm", "*.sse"))
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		evs := SplitEvents(raw)
		if !bytes.Equal(bytes.Join(evs, nil), raw) {
			t.Fatalf("%s: pieces do not rebuild the file", f)
		}
		for _, ev := range evs {
			if !bytes.HasPrefix(ev, []byte("data: ")) || !bytes.HasSuffix(ev, []byte("\n\n")) && !bytes.HasSuffix(ev, []byte("\r\n\r\n")) {
				t.Fatalf("%s: piece %q is not one event", f, ev)
			}
		}
	}
	if got := SplitEvents([]byte("data: a\n\ndata: b")); len(got) != 2 || string(got[1]) != "data: b" {
		t.Fatalf("tail piece: %q", got)
	}
}

func TestGeminiFakeRefusesLikeTheAPI(t *testing.T) {
	srv := NewGemini(t, Script{Deltas: []string{"x"}})
	base := srv.URL + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
	for body, want := range map[string]string{
		`{"contents":[{"parts":[{"text":"hi"}]}],"generation_config":{},"foo":1}`: `Unknown name \"foo\"`,
		`{"systemInstruction":{"parts":[{"text":"s"}]}}`:                          "contents is not specified",
		`not json`: "Invalid JSON payload",
	} {
		code, got := post(t, base, body)
		if code != 400 || !strings.Contains(got, want) || !strings.Contains(got, `"status":"INVALID_ARGUMENT"`) {
			t.Errorf("%s: %d %s", body, code, got)
		}
	}
	if code, _ := post(t, srv.URL+"/v1/models/x:streamGenerateContent", `{}`); code != 404 {
		t.Errorf("wrong path: %d", code)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("refused requests were recorded: %d", n)
	}
}

func TestNonStreamingAnswers(t *testing.T) {
	g := NewGemini(t, Script{Deltas: []string{"Hel", "lo"}, Usage: Usage{InputTokens: 3, OutputTokens: 2}})
	code, body := post(t, g.URL+"/v1beta/models/m:generateContent", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`)
	var gr struct {
		Candidates []struct {
			Content struct{ Parts []struct{ Text string } }
		}
		UsageMetadata struct{ CandidatesTokenCount int }
	}
	if code != 200 || json.Unmarshal([]byte(body), &gr) != nil || gr.Candidates[0].Content.Parts[0].Text != "Hello" ||
		gr.UsageMetadata.CandidatesTokenCount != 2 {
		t.Fatalf("gemini generateContent: %d %s", code, body)
	}
	if r := g.Requests()[0]; r.Stream || r.User != "hi" || r.Model != "m" {
		t.Fatalf("recorded %+v", r)
	}

	o := NewOpenAI(t, Script{Deltas: []string{"Hel", "lo"}})
	code, body = post(t, o.URL+"/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	var or struct {
		Object  string
		Choices []struct{ Message struct{ Content string } }
	}
	if code != 200 || json.Unmarshal([]byte(body), &or) != nil || or.Object != "chat.completion" || or.Choices[0].Message.Content != "Hello" {
		t.Fatalf("openai non-stream: %d %s", code, body)
	}
}

func TestDefaultErrorBodies(t *testing.T) {
	o := NewOpenAI(t, Script{Status: 429})
	code, body := post(t, o.URL+"/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`)
	if code != 429 || !strings.Contains(body, `"code":"rate_limit_exceeded"`) {
		t.Fatalf("%d %s", code, body)
	}
	g := NewGemini(t, Script{Status: 503})
	code, body = post(t, g.URL+"/v1beta/models/m:streamGenerateContent?alt=sse", `{"contents":[{"parts":[{"text":"q"}]}]}`)
	if code != 503 || !strings.Contains(body, `"status":"UNAVAILABLE"`) {
		t.Fatalf("%d %s", code, body)
	}
}
