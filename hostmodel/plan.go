package hostmodel

import (
	"fmt"
	"net/netip"

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

// Model predicts one operation; rules.Predict is the model. Tests may
// substitute a smaller one.
type Model func(w rules.World, s rules.Socket, op rules.Op) rules.Outcome

// Predict runs the plan through model (rules.Predict when nil), each
// operation starting from the socket the previous one left.
func Predict(model Model, w rules.World, p Plan) Result {
	if model == nil {
		return run(rules.NewModel(w).Predict, p)
	}
	return run(func(s rules.Socket, op rules.Op) rules.Outcome { return model(w, s, op) }, p)
}

func run(predict func(rules.Socket, rules.Op) rules.Outcome, p Plan) Result {
	s := p.Socket
	var out rules.Outcome
	for i, op := range p.Ops {
		out = predict(s, op)
		if !out.OK() {
			return Result{Outcome: out, Failed: i}
		}
		s = out.After
	}
	return Result{Outcome: out, Failed: -1}
}

// predict runs p against the situation's world, or against w when it is
// not nil (a world changed by a candidate fix). The situation's own world
// is indexed once (rules.NewModel) and reused, so trying many ports or
// addresses stays cheap on a large table.
func (sit *Situation) predict(w *rules.World, p Plan) Result {
	if w != nil {
		return Predict(sit.Model, *w, p)
	}
	if sit.Model != nil {
		return Predict(sit.Model, sit.World(), p)
	}
	if sit.indexed == nil {
		sit.indexed = rules.NewModel(sit.World())
	}
	return run(sit.indexed.Predict, p)
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

// ResolveSource fills in Op.Source of the plan's connect with the address
// the kernel's route lookup would give it, when the socket is not bound to
// a specific address. It runs in the calling thread's network namespace.
func ResolveSource(p *Plan) error {
	bound := false
	for i := range p.Ops {
		op := &p.Ops[i]
		switch op.Kind {
		case rules.OpBind:
			bound = !op.Addr.Addr().Unmap().IsUnspecified()
		case rules.OpConnect:
			if bound {
				continue
			}
			src, err := SourceFor(op.Addr.Addr(), p.Socket.Dev)
			if err != nil {
				return fmt.Errorf("no route to %s: %w", op.Addr.Addr(), err)
			}
			if p.Socket.Family == rules.IPv6 && src.Is4() {
				src = netip.AddrFrom16(src.As16())
			}
			op.Source = src
		}
	}
	return nil
}
