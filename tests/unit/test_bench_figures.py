"""The benchmark's new figures: baseline 0 (bench/kube_ceiling.py) and its column, the highest
sustained rate held (bench/steps.py), and the slot handovers of a capacity-bound drain."""

from bench import kube_ceiling, report
from colonies_operator.jobs import builder


def test_baseline_0_creates_the_jobs_the_operator_builds_one_per_made_up_process():
    made = kube_ceiling.jobs(3, "bench-ns", "2s", 5)
    assert len({j["metadata"]["name"] for j in made}) == 3
    job = made[0]
    assert job["metadata"]["name"].startswith(builder.JOB_NAME_PREFIX)
    main = job["spec"]["template"]["spec"]["containers"][0]
    assert main["image"] == "busybox:1.36" and main["command"] == ["/bin/sh", "-c", "echo bench"]
    assert {"name": "KWOK_RUN_FOR", "value": "2s"} in main["env"]
    assert main["resources"]["requests"] == {"cpu": "1m", "memory": "1Mi"}


def test_the_table_shows_the_burst_rate_against_baseline_0():
    data = {"results": {"p1_burst": {"processes": 200, "operator": {"jobs_per_second": 40.0},
                                     "kube_ceiling": {"jobs_per_second": 50.0},
                                     "ceiling": {"jobs_per_second": 100.0}}}}
    burst = next(line for line in report.table(data).splitlines() if line.startswith("P1 burst launch rate"))
    assert "40.0" in burst and "50.0" in burst and "0.80×" in burst and "0.40×" in burst


def test_the_highest_rate_held_is_the_last_step_before_p99_passes_one_second():
    from bench.steps import held
    climb = [{"rate": r, "submitted_to_job_created_s": {"p99": p99}} for r, p99 in ((10, 0.1), (20, 0.4), (40, 1.7))]
    assert held(climb) == 20
    assert held(climb[:2]) == 20  # every step held: the last one
    assert held([{"rate": 10, "submitted_to_job_created_s": {"p99": 3.0}}]) is None
    data = {"results": {"p1_steps": {"rates": [10, 20, 40], "operator": {"highest_rate_held": 20},
                                     "kube_ceiling": {"highest_rate_held": 40}, "naive": {"highest_rate_held": 10}}}}
    row = next(line for line in report.table(data).splitlines() if line.startswith("P1 highest"))
    assert "0.50×" in row and "2.00×" in row  # ÷ baseline 0, ÷ baseline 2


def test_a_finished_job_hands_its_slot_to_the_next_job_created_after_it():
    from bench.drain import handovers
    assert handovers(finished=[10.0, 13.0], created=[0.0, 10.5, 13.25]) == [0.5, 0.25]
    assert handovers(finished=[20.0], created=[0.0, 10.0]) == []  # nothing created after it


def test_cpu_per_process_sets_the_machines_bound_for_a_burst():
    from bench.figures import cpu_bound, cpu_per_process
    cpu = {"kube-apiserver": {"cpu_seconds": 2.0, "cores": 1.0}, "operator": {"cpu_seconds": 1.0, "cores": 0.5},
           "bench (submitting, watching)": {"cpu_seconds": 5.0, "cores": 2.5}}
    per = cpu_per_process(cpu, 100)
    assert list(per) == ["kube-apiserver", "operator", "all"] and per["all"] == 0.03
    assert round(cpu_bound(per, 2), 3) == 66.667
    assert cpu_per_process({}, 100) is None and cpu_bound(None, 2) is None
    data = {"results": {"p1_burst": {"processes": 100,
                                     "operator": {"jobs_per_second": 50.0, "cpu_seconds_per_process": per},
                                     "kube_ceiling": {"jobs_per_second": 100.0,
                                                      "cpu_seconds_per_process": {"all": 0.01}}}}}
    lines = report.table(data).splitlines()
    cost = next(line for line in lines if line.startswith("P1 burst: CPU seconds per process"))
    assert "30 ms" in cost and "10 ms" in cost and "3.00×" in cost
    bound = next(line for line in lines if line.startswith("P1 burst: processes/s these cores"))
    assert "66.7" in bound and "200.0" in bound  # 2 cores ÷ 30 ms; baseline 0: 2 ÷ 10 ms


def test_a_run_without_sustained_and_scale_plots_its_steps_and_its_soak_in_their_places(tmp_path, monkeypatch):
    drawn: list[str] = []
    monkeypatch.setattr(report, "_plot_steps", lambda ax, *a: drawn.append("steps") or ax.plot([1], [1]))
    monkeypatch.setattr(report, "_plot_soak", lambda ax, *a: drawn.append("soak") or ax.plot([1], [1]))
    steps = {"operator": {"steps": [{"rate": 10.0, "submitted_to_job_created_s": {"p99": 0.2}}], "highest_rate_held": 10}}
    data = {"results": {"p1_steps": steps, "soak": {"faults": [{"at_s": 60.0, "fault": "kill_operator"}]}},
            "series": {"soak_rss": [(0.0, 90.0), (5.0, 91.0)]}}
    report.plot(data, tmp_path / "run.png")
    assert drawn == ["steps", "soak"] and (tmp_path / "run.png").stat().st_size > 0
    monkeypatch.undo()
    report.plot(data, tmp_path / "real.png")  # the real panels draw from the same data
    assert (tmp_path / "real.png").stat().st_size > 0


def test_a_soak_run_alone_plots_the_soak_alone(tmp_path, monkeypatch):
    axes = []
    monkeypatch.setattr(report, "_plot_soak", lambda ax, *a: axes.append(ax) or ax.plot([1], [1]))
    data = {"results": {"soak": {"faults": [{"at_s": 60.0, "fault": "kill_operator"}]}},
            "series": {"soak_rss": [(0.0, 90.0), (5.0, 91.0)]}}
    report.plot(data, tmp_path / "soak.png")
    assert len(axes) == 1 and len(axes[0].figure.axes) == 1, "three empty panels next to the soak"
    monkeypatch.undo()
    report.plot(data, tmp_path / "real.png")
    assert (tmp_path / "real.png").stat().st_size > 0
