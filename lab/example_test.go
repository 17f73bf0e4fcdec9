package lab_test

import (
	"fmt"

	"github.com/tuple-net/tuple/lab"
)

// Parse turns a scenario file into steps; running them (Runner.Run) needs
// Linux and root, parsing does not.
func ExampleParse() {
	text := []byte(`# nc -p 12345 twice
[nc-double-p]
NC1 socket tcp4
NC1 bind 0.0.0.0:12345     => ok
NC2 socket tcp4
NC2 bind 0.0.0.0:@NC1      => EADDRINUSE
`)
	scenarios, err := lab.Parse("nc.lab", text)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, sc := range scenarios {
		fmt.Printf("[%s] needs uids %v\n", sc.Name, sc.UIDs())
		for _, st := range sc.Steps {
			fmt.Printf("line %d: %s %s => %q\n", st.Line, st.Sock, st.Op, st.Expect)
		}
	}
	_, err = lab.Parse("bad.lab", []byte("[x]\nA socket tcp4 reuse\n"))
	fmt.Println(err)
	// Output:
	// [nc-double-p] needs uids [0]
	// line 3: NC1 socket tcp4 => ""
	// line 4: NC1 bind 0.0.0.0:12345 => "ok"
	// line 5: NC2 socket tcp4 => ""
	// line 6: NC2 bind 0.0.0.0:@NC1 => "EADDRINUSE"
	// bad.lab:2: unknown option "reuse" (want reuseaddr, reuseport, v6only, bind-no-port, freebind, port-range=LO-HI, dev=IF, uid=N or in=HOST)
}
