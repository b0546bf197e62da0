package memory

import (
	"reflect"
	"strings"
	"testing"
)

// fact is shorthand for a test fact without an id.
func fact(slot, text string) Fact { return Fact{Slot: slot, Text: text} }

func TestHeuristicFacts(t *testing.T) {
	cases := []struct {
		user string
		want []Fact
	}{
		{"My name is Anna.", []Fact{fact("name", "Anna")}},
		{"my name is anna", []Fact{fact("name", "Anna")}},
		{"Hi, my name is Anna Maria Smith Jones", []Fact{fact("name", "Anna Maria Smith")}},
		{"My name is Anna and I live in New York City.", []Fact{fact("name", "Anna"), fact("city", "New York City")}},
		{"Please call me Sasha.", []Fact{fact("name", "Sasha")}},
		{"Меня зовут Анна, я живу в Москве", []Fact{fact("name", "Анна"), fact("city", "Москве")}},
		{"моё имя Пётр", []Fact{fact("name", "Пётр")}},
		{"Мое имя Олег", []Fact{fact("name", "Олег")}},
		{"my email is anna.k@example.org.", []Fact{fact("email", "anna.k@example.org")}},
		{"My e-mail address: bob@mail.co.uk", []Fact{fact("email", "bob@mail.co.uk")}},
		{"моя почта ivan@yandex.ru", []Fact{fact("email", "ivan@yandex.ru")}},
		{"I live in the Netherlands", []Fact{fact("city", "Netherlands")}},
		{"I live in San Francisco with my wife", []Fact{fact("city", "San Francisco")}},
		{"I like jazz, especially Miles.", []Fact{fact("preference", "likes jazz")}},
		{"I love audiobooks. I don't like loud music", []Fact{fact("preference", "loves audiobooks"), fact("preference", "dislikes loud music")}},
		{"I really enjoy long walks", []Fact{fact("preference", "enjoys long walks")}},
		{"My favorite color is blue.", []Fact{fact("preference", "favorite color: blue")}},
		{"my favourite band is Queen", []Fact{fact("preference", "favorite band: Queen")}},
		{"я люблю джаз", []Fact{fact("preference", "любит джаз")}},
		{"Я не люблю шум.", []Fact{fact("preference", "не любит шум")}},
		{"мой любимый цвет — синий", []Fact{fact("preference", "любимый цвет: синий")}},
		{"Nexy, remember that my keys are in the drawer.", []Fact{fact("note", "my keys are in the drawer")}},
		{"Remember: the meeting is at 10.30 on Friday", []Fact{fact("note", "the meeting is at 10.30 on Friday")}},
		{"please remember that Bob's birthday is May 5", []Fact{fact("note", "Bob's birthday is May 5")}},
		{"Don't forget that I take my pills at 9", []Fact{fact("note", "I take my pills at 9")}},
		{"запомни, что ключи под ковриком", []Fact{fact("note", "ключи под ковриком")}},
		{"Запомни: встреча в пятницу", []Fact{fact("note", "встреча в пятницу")}},
		{"запомни мой номер квартиры 12", []Fact{fact("note", "мой номер квартиры 12")}},
		{"не забудь, что у мамы день рождения в мае", []Fact{fact("note", "у мамы день рождения в мае")}},
	}
	for _, c := range cases {
		got := Heuristic(Turn{User: c.user}).Remember
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Heuristic(%q).Remember = %v, want %v", c.user, got, c.want)
		}
	}
}

// TestHeuristicNoFalseFacts holds the upstream C3 negatives and their kin:
// nothing here is an explicit statement of a fact.
func TestHeuristicNoFalseFacts(t *testing.T) {
	for _, user := range []string{
		"I am going home",
		"I'm tired",
		"I am Anna", // not one of the explicit forms: too close to "I am going"
		"I'm from Berlin",
		"call me back later",
		"call me a taxi",
		"can you call me when it is done",
		"what is my name?",
		"как меня зовут?",
		"my name is not important",
		"I live in a small town",
		"I like it",
		"I love you",
		"what I like is jazz",
		"I'd like a coffee",
		"я люблю тебя",
		"do you remember that song?",
		"I remember that day",
		"remember to buy milk",
		"запомнил?",
		"запомни это",
		"you never remember that",
		"what's the weather in Paris",
		"",
	} {
		if got := Heuristic(Turn{User: user}).Remember; len(got) != 0 {
			t.Errorf("Heuristic(%q).Remember = %v, want none", user, got)
		}
	}
}

func TestHeuristicForget(t *testing.T) {
	cases := []struct {
		user  string
		all   bool
		terms []string
	}{
		{"Forget everything about me.", true, nil},
		{"please forget everything", true, nil},
		{"Nexy, forget all.", true, nil},
		{"forget everything you know about me, please", true, nil},
		{"forget all my data", true, nil},
		{"forget about me", true, nil},
		{"забудь всё", true, nil},
		{"Забудь все обо мне.", true, nil},
		{"забудь всё, что ты знаешь обо мне", true, nil},
		{"forget my name", false, []string{"name"}},
		{"forget my e-mail", false, []string{"email"}},
		{"Forget that I like jazz.", false, []string{"jazz"}},
		{"forget that my email is a@b.com", false, []string{"email"}},
		{"forget about my sister Maria", false, []string{"sister Maria"}},
		{"forget the drawer thing, please", false, []string{"the drawer thing"}},
		{"забудь, что я люблю джаз", false, []string{"джаз"}},
		{"забудь моё имя", false, []string{"name"}},
		{"забудь мою почту", false, []string{"email"}},
		{"забудь про Машу", false, []string{"Машу"}},
		// Not requests, or not about memory.
		{"forget all that and tell me a joke", false, nil},
		{"forget everything I said about the weather and start over", false, nil},
		{"forget it", false, nil},
		{"don't forget my umbrella", false, nil},
		{"не забудь про встречу", false, nil},
		{"you always forget my name", false, nil},
		{"I forgot my keys", false, nil},
		{"забудь всё, что я сказал про погоду", false, nil},
	}
	for _, c := range cases {
		u := Heuristic(Turn{User: c.user})
		if u.ForgetAll != c.all || !reflect.DeepEqual(u.Forget, c.terms) {
			t.Errorf("Heuristic(%q): ForgetAll=%v Forget=%q, want %v %q", c.user, u.ForgetAll, u.Forget, c.all, c.terms)
		}
	}
}

// TestHeuristicForgetStoresNothing: the words of a forget request never
// become a fact, so the heuristic cannot store what the user asks to forget.
func TestHeuristicForgetStoresNothing(t *testing.T) {
	for _, user := range []string{
		"forget that my email is a@b.com",
		"forget that my name is Anna",
		"забудь, что я люблю джаз",
		"forget that I live in Paris",
	} {
		if got := Heuristic(Turn{User: user}).Remember; len(got) != 0 {
			t.Errorf("Heuristic(%q).Remember = %v, want none", user, got)
		}
	}
	u := Heuristic(Turn{User: "Forget everything about me. My name is Bob."})
	if !u.ForgetAll || !reflect.DeepEqual(u.Remember, []Fact{fact("name", "Bob")}) {
		t.Errorf("forget all then a new name: %+v", u)
	}
}

func TestHeuristicSecrets(t *testing.T) {
	for _, user := range []string{
		"remember that my password is hunter2",
		"запомни, что мой пароль qwerty",
		"remember: my card is 4111 1111 1111 1111",
		"remember that the door code is PIN 4321",
		"remember my api key: sk-abcdefghijklmnopqrstuv",
	} {
		u := Heuristic(Turn{User: user, Assistant: "Okay, noted: " + user})
		if len(u.Remember) != 0 {
			t.Errorf("Heuristic(%q) kept a secret fact: %v", user, u.Remember)
		}
		if _, changed := Redact(u.Digest); changed || !strings.Contains(u.Digest, Mark) {
			t.Errorf("Heuristic(%q).Digest = %q, want the secret redacted", user, u.Digest)
		}
	}
}

func TestHeuristicDigest(t *testing.T) {
	long := strings.Repeat("word ", 60)
	cases := []struct{ user, assistant, want string }{
		{"What's the weather?", "Sunny, 20 degrees.", "asked: What's the weather?; answered: Sunny, 20 degrees"},
		{"  two\n\nlines\tof text ", "", "asked: two lines of text"},
		{"", "Hello there", "answered: Hello there"},
		{"", "", ""},
		{"a | b", "c|d", "asked: a / b; answered: c/d"},
		{long, long, "asked: " + strings.Repeat("word ", 19) + "word…; answered: " + strings.Repeat("word ", 19) + "word…"},
		{"my card 4111 1111 1111 1111", "ok", "asked: my card [redacted]; answered: ok"},
	}
	for _, c := range cases {
		u := Heuristic(Turn{User: c.user, Assistant: c.assistant})
		if u.Digest != c.want {
			t.Errorf("digest of %q/%q = %q, want %q", c.user, c.assistant, u.Digest, c.want)
		}
		if u.Method != MethodHeuristic || u.Usage.InputTokens != 0 {
			t.Errorf("method/usage: %+v", u)
		}
	}
}

// TestHeuristicDigestNeverNests: a digest built from a turn whose text
// already looks like a digest stays one flat line (upstream C6).
func TestHeuristicDigestNeverNests(t *testing.T) {
	prev := Heuristic(Turn{User: "first question", Assistant: "first answer"}).Digest
	u := Heuristic(Turn{User: "second question", Assistant: "second answer"})
	merged := MergeDigest(prev, u.Digest)
	if merged != prev+" | "+u.Digest || strings.Count(merged, "asked:") != 2 {
		t.Errorf("merged digest %q", merged)
	}
}
