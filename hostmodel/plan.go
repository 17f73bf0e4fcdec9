package hostmodel

import (
	"fmt"

	"github.com/tuple-net/tuple/rules"
)

// Plan is what the new socket does, in order: for example bind then listen,
// or bind then connect. The socket is described as created (Unbound).
type Plan struct {
	Socket rules.Socket
	Ops    []rules.Op
}

// Result is a plan's predicted outcome: the outcome of the first operation
// that fails, or of the last one.
type Result struct {
	rules.Outcome
	Failed int // index of the failing operation in Plan.Ops, -1 when all succeed
}

// Model predicts one operation; rules.Predict is the model.
type Model func(w rules.World, s rules.Socket, op rules.Op) rules.Outcome

// Predict runs the plan through model (rules.Predict when nil), each
// operation starting from the socket the previous one left.
func Predict(model Model, w rules.World, p Plan) Result {
	if model == nil {
		model = rules.Predict
	}
	s := p.Socket
	var out rules.Outcome
	for i, op := range p.Ops {
		out = model(w, s, op)
		if !out.OK() {
			return Result{Outcome: out, Failed: i}
		}
		s = out.After
	}
	return Result{Outcome: out, Failed: -1}
}

// String describes the plan as the syscalls it makes: "bind 127.0.0.1:80,
// listen".
func (p Plan) String() string {
	s := ""
	for i, op := range p.Ops {
		if i > 0 {
			s += ", "
		}
		switch op.Kind {
		case rules.OpListen:
			s += "listen"
		default:
			s += fmt.Sprintf("%s %s", op.Kind, op.Addr)
		}
	}
	return s
}
