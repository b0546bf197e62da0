package memory

import (
	"fmt"
	"reflect"
	"testing"
)

func TestPlan(t *testing.T) {
	current := []Fact{
		{ID: 1, Slot: "name", Text: "Anna"},
		{ID: 2, Slot: "email", Text: "anna@old.org"},
		{ID: 3, Slot: "preference", Text: "likes jazz"},
		{ID: 4, Slot: "preference", Text: "dislikes loud music"},
		{ID: 5, Slot: "note", Text: "keys are in the drawer"},
		{ID: 6, Slot: "contact", Text: "sister Maria, WhatsApp"},
	}
	cases := []struct {
		name   string
		u      Update
		retire []int64
		add    []Fact
	}{
		{"nothing", Update{}, nil, nil},
		{"new multi-valued fact", Update{Remember: []Fact{fact("preference", "loves audiobooks")}},
			nil, []Fact{fact("preference", "loves audiobooks")}},
		{"duplicate ignores case and trailing dot", Update{Remember: []Fact{fact("preference", "Likes Jazz."), fact("name", "anna")}},
			nil, nil},
		{"single-valued replaces", Update{Remember: []Fact{fact("name", "Anne")}}, []int64{1}, []Fact{fact("name", "Anne")}},
		{"last value in one update wins", Update{Remember: []Fact{fact("city", "Paris"), fact("city", "Berlin")}},
			nil, []Fact{fact("city", "Berlin")}},
		{"duplicates within an update", Update{Remember: []Fact{fact("note", "x y"), fact("note", "X Y"), fact("notes", "x y")}},
			nil, []Fact{fact("note", "x y")}},
		{"unknown slot is a note", Update{Remember: []Fact{fact("hobby", "chess")}}, nil, []Fact{fact("note", "chess")}},
		{"forget all", Update{ForgetAll: true}, []int64{1, 2, 3, 4, 5, 6}, nil},
		{"forget by slot", Update{Forget: []string{"name"}}, []int64{1}, nil},
		{"forget by slot alias", Update{Forget: []string{"E-Mail"}}, []int64{2}, nil},
		{"forget by words", Update{Forget: []string{"JAZZ"}}, []int64{3}, nil},
		{"forget needs whole words", Update{Forget: []string{"raw"}}, nil, nil},
		{"a one-letter term matches nothing", Update{Forget: []string{"a"}}, nil, nil},
		{"forget several", Update{Forget: []string{"maria", "drawer"}}, []int64{5, 6}, nil},
		{"forget all then a new name", Update{ForgetAll: true, Remember: []Fact{fact("name", "Bob")}},
			[]int64{1, 2, 3, 4, 5, 6}, []Fact{fact("name", "Bob")}},
		{"an echo of a forgotten fact is not added", Update{ForgetAll: true, Remember: []Fact{fact("name", "Anna"), fact("preference", "likes jazz")}},
			[]int64{1, 2, 3, 4, 5, 6}, nil},
		{"an echo after forgetting by slot", Update{Forget: []string{"name"}, Remember: []Fact{fact("name", "Anna")}},
			[]int64{1}, nil},
		{"a new fact holding a forget term is not added", Update{Forget: []string{"jazz"}, Remember: []Fact{fact("preference", "likes smooth jazz")}},
			[]int64{3}, nil},
		{"forget old email, store the new one", Update{Forget: []string{"email"}, Remember: []Fact{fact("email", "anna@new.org")}},
			[]int64{2}, []Fact{fact("email", "anna@new.org")}},
		{"a secret is never added", Update{Remember: []Fact{fact("note", "wifi password is hunter2"), fact("note", "card 4111 1111 1111 1111")}},
			nil, nil},
		{"texts are cleaned", Update{Remember: []Fact{fact("note", "  two\nlines ")}}, nil, []Fact{fact("note", "two lines")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			retire, add := Plan(current, c.u)
			if !reflect.DeepEqual(retire, c.retire) || !reflect.DeepEqual(add, c.add) {
				t.Errorf("Plan = %v %v, want %v %v", retire, add, c.retire, c.add)
			}
		})
	}
}

func TestPlanSingleValuedCleansDuplicates(t *testing.T) {
	// A store that somehow holds two names: a new name retires both.
	current := []Fact{{ID: 1, Slot: "name", Text: "Anna"}, {ID: 2, Slot: "Name", Text: "Ann"}}
	retire, add := Plan(current, Update{Remember: []Fact{fact("name", "Anne")}})
	if !reflect.DeepEqual(retire, []int64{1, 2}) || len(add) != 1 {
		t.Errorf("Plan = %v %v", retire, add)
	}
	// Restating one of them keeps it and retires the other.
	retire, add = Plan(current, Update{Remember: []Fact{fact("name", "ann")}})
	if !reflect.DeepEqual(retire, []int64{1}) || add != nil {
		t.Errorf("Plan = %v %v", retire, add)
	}
}

func TestPlanZeroIDsAreNeverRetired(t *testing.T) {
	retire, _ := Plan([]Fact{{Slot: "name", Text: "Anna"}}, Update{ForgetAll: true})
	if retire != nil {
		t.Errorf("retired %v", retire)
	}
}

func TestPlanBound(t *testing.T) {
	var current []Fact
	for i := 1; i <= MaxFacts; i++ {
		slot := "note"
		if i <= 3 {
			slot = []string{"name", "city", "email"}[i-1] // the oldest ids are single-valued
		}
		current = append(current, Fact{ID: int64(i), Slot: slot, Text: fmt.Sprintf("fact %d", i)})
	}
	retire, add := Plan(current, Update{Remember: []Fact{fact("note", "new one"), fact("note", "new two")}})
	if !reflect.DeepEqual(retire, []int64{4, 5}) || len(add) != 2 {
		t.Errorf("over the bound: retire %v add %v; want the oldest multi-valued (4, 5) retired", retire, add)
	}
	// Only single-valued facts left to retire: the oldest of them goes.
	single := []Fact{{ID: 10, Slot: "name", Text: "A"}, {ID: 11, Slot: "city", Text: "B"}}
	var many []Fact
	for i := 0; i < MaxFacts-1; i++ {
		many = append(many, fact("note", fmt.Sprintf("n%d", i)))
	}
	retire, add = Plan(single, Update{Remember: many})
	if !reflect.DeepEqual(retire, []int64{10}) || len(add) != MaxFacts-1 {
		t.Errorf("retire %v, %d added", retire, len(add))
	}
	// An update larger than the bound is cut.
	for i := 0; i < 10; i++ {
		many = append(many, fact("note", fmt.Sprintf("m%d", i)))
	}
	if _, add = Plan(nil, Update{Remember: many}); len(add) != MaxFacts {
		t.Errorf("%d added, want %d", len(add), MaxFacts)
	}
}
