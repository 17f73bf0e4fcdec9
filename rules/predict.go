package rules

// Predict returns what the kernel would do if the new socket s performed op
// in world w. It never panics and does not modify w.
//
// PLACEHOLDER: the model itself is being written (issue 4); until then it
// predicts success for everything so dependents compile.
func Predict(w World, s Socket, op Op) Outcome {
	return Outcome{After: s, Candidates: -1}
}
