package exporter

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tuple-net/tuple/nat"
)

const (
	alertsFile     = "../deploy/prometheus/alerts.yml"
	alertTestsFile = "../deploy/prometheus/alerts_test.yml"
	dashboardFile  = "../deploy/grafana/tuple.json"
)

// TestAlertRules runs the alert rules' unit tests with promtool.
func TestAlertRules(t *testing.T) {
	promtool := requirePromtool(t)
	for _, args := range [][]string{{"check", "rules", alertsFile}, {"test", "rules", alertTestsFile}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// exportedNames are the metric families the exporter really exposes, from a
// fixture that fills every family.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	in := fixture(30)
	in.HostNotes = []string{"net.ipv4.tcp_tw_reuse_delay not present; using the kernel default"}
	reg.MustRegister(New(staticSource(in), Options{Top: 5}),
		NewNATCollector(func(context.Context) (nat.Snapshot, error) { return natFixture(), nil }, 2, 0, nil),
		fakeNamespaces(6, 2))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

var tupleMetric = regexp.MustCompile(`\btuple_[a-z0-9_]+`)

// checkReferences fails for every tuple_* name in exprs the exporter does
// not expose.
func checkReferences(t *testing.T, where string, exprs []string, names map[string]bool) {
	t.Helper()
	for _, e := range exprs {
		refs := tupleMetric.FindAllString(e, -1)
		if len(refs) == 0 {
			t.Errorf("%s: expression uses no tuple metric: %s", where, e)
		}
		for _, r := range refs {
			if !names[r] {
				t.Errorf("%s: %s is not exported (expression %s)", where, r, e)
			}
		}
	}
}

func TestDashboardUsesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard lacks title, uid or panels")
	}
	names := exportedNames(t)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		var exprs []string
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			for _, r := range tupleMetric.FindAllString(tg.Expr, -1) {
				used[r] = true
			}
		}
		if len(exprs) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		checkReferences(t, "panel "+p.Title, exprs, names)
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			checkReferences(t, "variable "+v.Name, []string{v.Definition}, names)
		}
	}
	// Every tuple metric but the exporter's own bookkeeping is on a panel.
	var missing []string
	for n := range names {
		if tupleMetric.MatchString(n) && !used[n] && n != "tuple_scrapes_total" {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("exported but on no panel: %v", missing)
	}
}

func TestAlertsUseExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	// Every "expr:" block; the file is ours, so a light scan is enough to
	// catch a renamed metric.
	exprs := regexp.MustCompile(`(?m)^\s+expr: (\|\n(?:\s{10,}.*\n)+|.*\n)`).FindAllStringSubmatch(string(b), -1)
	if len(exprs) != 8 {
		t.Fatalf("found %d alert expressions, want 8", len(exprs))
	}
	var list []string
	for _, m := range exprs {
		list = append(list, m[1])
	}
	checkReferences(t, alertsFile, list, exportedNames(t))
}
