"""The soak's pure parts: the seeded order of faults, the verdict on what became of every
process, the RSS windows; and the comparison of a run with a reference run."""

from __future__ import annotations

from types import SimpleNamespace

from bench import compare, soak
from colonies_operator.colonies.models import ProcessState


def test_every_round_of_faults_holds_each_kind_once_in_a_seeded_order():
    order = soak.fault_order(13, 2 * len(soak.FAULTS) + 3)
    first, second = order[:len(soak.FAULTS)], order[len(soak.FAULTS):2 * len(soak.FAULTS)]
    assert sorted(first) == sorted(second) == sorted(soak.FAULTS)
    assert first != second  # each round drawn anew
    assert soak.fault_order(13, 20) == soak.fault_order(13, 20)
    assert soak.fault_order(13, 20) != soak.fault_order(14, 20)


def process(state: ProcessState, *errors: str) -> SimpleNamespace:
    return SimpleNamespace(state=state, errors=list(errors))


LINES = ["line 1", "line 2", "line 3"]


def test_the_verdict_counts_only_what_the_faults_do_not_explain():
    pids = ["ok", "cancelled", "deleted", "deleted-but-done", "stray-cancel", "failed", "open", "twice"]
    processes = {
        "ok": process(ProcessState.SUCCESS), "cancelled": process(ProcessState.CANCELLED),
        "deleted": process(ProcessState.FAILED, "JobDeleted: someone deleted it"),
        "deleted-but-done": process(ProcessState.SUCCESS),  # it ended before the delete landed
        "stray-cancel": process(ProcessState.CANCELLED), "failed": process(ProcessState.FAILED, "ExitCode(1)"),
        "open": process(ProcessState.RUNNING), "twice": process(ProcessState.SUCCESS),
    }
    explained = soak.Explained(cancelled={"cancelled"}, jobs_deleted={"deleted", "deleted-but-done"})
    uids = {p: {"u-" + p} for p in pids} | {"twice": {"u1", "u2"}}
    logs = {"ok": LINES, "deleted-but-done": LINES, "twice": ["line 1", "line 1", "line 3"]}
    out = soak.verdict(pids, processes, explained, uids, logs, {p: LINES for p in pids})
    assert out["not_final"] == 1
    assert out["unexplained"] == 2
    assert {u[0] for u in out["unexplained_first"]} == {"stray-cancel", "failed"}
    assert out["ran_in_more_than_one_job"] == 1
    assert (out["log_lines_lost"], out["log_lines_duplicated"], out["processes_with_log_not_exact"]) == (1, 1, 1)
    assert out["log_lines_checked"] == 9


def test_rss_compares_the_first_and_the_last_window():
    samples = [(t, 100_000 if t < 300 else 110_000) for t in range(0, 1200, 5)]
    flat = soak.rss_flatness(samples, 300)
    assert flat["last_over_first"] == 1.1 and flat["window_s"] == 300
    assert soak.rss_flatness([(0, 1)], 300) is None


def test_the_first_rss_window_begins_after_the_warm_up():
    # The Job cache fills for the Jobs' TTL after the operator starts on an empty cluster:
    # 90 → 100 MiB in the warm-up, then flat; the ratio from the start would call that growth.
    samples = [(t, 90_000 + 10_000 * min(t, 360) // 360) for t in range(0, 1560, 5)]
    flat = soak.rss_flatness(samples, 300, since=360)
    assert flat["last_over_first"] == 1.0 and flat["first_from_s"] == 360
    assert soak.rss_flatness(samples, 300)["last_over_first"] > 1.05


def test_a_run_is_compared_with_the_reference_figure_by_figure():
    run = {"results": {"p1_burst": {"processes": 200, "operator": {"jobs_per_second": 45.0}},
                       "soak": {"not_final": 0}}}
    ref = {"results": {"p1_burst": {"processes": 200, "operator": {"jobs_per_second": 50.0}},
                       "soak": {"not_final": 0}}, "meta": {"cpus": 2, "machine": "2 cores, 24 GiB"}}
    text = compare.table(run, ref, "ref.json")
    burst = next(line for line in text.splitlines() if line.startswith("P1 burst launch rate"))
    assert "45.0" in burst and "50.0" in burst and "0.90×" in burst
    lost = next(line for line in text.splitlines() if line.startswith("Soak: processes not ended"))
    assert lost.split()[-1] == "="
    assert "compared with ref.json (2 cores; 2 cores, 24 GiB)" in text


def test_a_shared_backlog_reports_its_split_and_every_process_run_twice_or_never():
    from bench.shared import once_each
    out = once_each(["a", "b", "c", "d"], {"ns1": {"a": {"u1"}, "b": {"u2"}}, "ns2": {"c": {"u3"}, "b": {"u4"}}})
    assert out == {"split": {"ns1": 2, "ns2": 2}, "processes_in_more_than_one_job": 1, "processes_without_a_job": 1}


def test_the_rss_sampler_reads_no_pid_while_the_operator_restarts():
    # The sampler died at the soak's first operator restart, when the bench's operator was None
    # for a moment: the RSS figure then covered the first 2 minutes of 20.
    bench = SimpleNamespace(operator=None)
    assert soak._BenchOperator(bench, "bench-soak-x").pid == 0
    bench.operator = SimpleNamespace(pid=4242)
    assert soak._BenchOperator(bench, "bench-soak-x").pid == 4242
