"""The terminal table and the PNG plot of one benchmark run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.figures import cpu_bound


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if unit == "ms":
            return f"{v * 1000:.0f} ms" if v >= 0.01 else f"{v * 1000:.1f} ms"
        if unit == "s":
            return f"{v:.1f} s"
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return f"{v}{(' ' + unit) if unit and unit not in ('ms', 's') else ''}"


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "—"
    return f"{a / b:.2f}×"


def _verdict(value: Any, target: tuple[str, float] | None) -> str:
    if target is None or not isinstance(value, (int, float)):
        return ""
    op, limit = target
    ok = value >= limit if op == ">=" else value <= limit
    return "MET" if ok else "NOT MET"


STEPS_ROW = "P1 highest sustained rate held, p99 submitted → Job created ≤ 1 s (steps {rates}/s)"


def rows(data: dict[str, Any]) -> list[tuple[str, Any, Any, Any, str, tuple[str, float] | None, str]]:
    """(figure, operator, baseline 1, baseline 2, unit, target, target text)"""
    r = data.get("results", {})
    b, s, p4, p5 = r.get("p1_burst", {}), r.get("p1_sustained", {}), r.get("p4_scale", {}), r.get("p5_recovery", {})
    li, p6, st, dr = r.get("p2_light", {}), r.get("p6_real", {}), r.get("p1_steps", {}), r.get("p1_drain", {})
    sk, sh = r.get("soak", {}), r.get("p1_shared", {})
    cores = (data.get("meta") or {}).get("cpus") or 2
    split = " / ".join(str(v) for v in (sh.get("split") or {}).values())
    warmup = _get(sk, "settings", "warmup")
    soak_run = (f"{_get(sk, 'settings', 'seconds'):.0f} s at {_get(sk, 'settings', 'rate'):g}/s, "
                f"{len(sk.get('faults') or [])} faults" + (f", after {warmup:.0f} s of warm-up" if warmup else "")
                if sk.get("settings") else "")
    at_once = f"assigned_to_container_running_{p6.get('batch')}_at_once_s"
    out = [
        (f"P1 burst launch rate, backlog {b.get('processes')} (Jobs/s)", _get(b, "operator", "jobs_per_second"),
         _get(b, "ceiling", "jobs_per_second"), _get(b, "naive", "jobs_per_second"), "", (">=", 50), "≥ 50"),
        (f"P1 sustained launch rate, offered {s.get('offered_per_second')}/s for {s.get('seconds')} s (Jobs/s)",
         _get(s, "operator", "jobs_per_second"), _get(s, "ceiling", "jobs_per_second"),
         _get(s, "naive", "jobs_per_second"), "", (">=", 20), "≥ 20"),
        ("P1 burst: CPU seconds per process, every stack component (launch to close)",
         _get(b, "operator", "cpu_seconds_per_process", "all"), _get(b, "ceiling", "cpu_seconds_per_process", "all"),
         None, "ms", None, ""),
        ("P1 burst: processes/s these cores could sustain at that CPU cost (cores ÷ CPU s per process)",
         cpu_bound(_get(b, "operator", "cpu_seconds_per_process"), cores),
         cpu_bound(_get(b, "ceiling", "cpu_seconds_per_process"), cores), None, "", None, ""),
        (STEPS_ROW.format(rates=",".join(f"{x:g}" for x in st.get("rates") or [])),
         _get(st, "operator", "highest_rate_held"), None, _get(st, "naive", "highest_rate_held"), "", None,
         "≥ 0.8× b0, ≥ 5× b2"),
        (f"P1 capacity-bound drain: {dr.get('processes')} processes, {dr.get('slots')} slots, "
         f"{dr.get('pod_run_for')} each (÷ the bound slots/run time)", dr.get("of_capacity_bound"), None, None, "",
         (">=", 0.9), "≥ 0.9"),
        ("P1 drain: a pod ended → the next Job created p50", _get(dr, "finished_to_next_created_s", "p50"), None,
         None, "ms", ("<=", 0.1), "≤ 100 ms"),
        ("P1 drain: a pod ended → the next Job created p99", _get(dr, "finished_to_next_created_s", "p99"), None,
         None, "ms", None, ""),
        ("P1 sustained submitted → Job created p50", _get(s, "operator", "submitted_to_job_created_s", "p50"),
         _get(s, "ceiling", "submitted_to_job_created_s", "p50"), _get(s, "naive", "submitted_to_job_created_s", "p50"),
         "ms", None, "(baseline 1: → assigned)"),
        ("P1 sustained submitted → Job created p99", _get(s, "operator", "submitted_to_job_created_s", "p99"),
         _get(s, "ceiling", "submitted_to_job_created_s", "p99"), _get(s, "naive", "submitted_to_job_created_s", "p99"),
         "ms", None, "(baseline 1: → assigned)"),
        (f"P1 shared type: {sh.get('processes')} processes, 3 executors on 2 operators (Jobs/s; split {split})",
         sh.get("jobs_per_second"), None, None, "", None, ""),
        ("P1 shared type: processes run in more than one Job", sh.get("processes_in_more_than_one_job"), None, None,
         "", ("<=", 0), "0"),
        ("P2 assigned → Job created p50, burst (watch)", _get(b, "operator", "assigned_to_job_created_s", "p50"), None,
         _get(b, "naive", "assigned_to_job_created_s", "p50"), "ms", ("<=", 0.1), "≤ 100 ms"),
        ("P2 assigned → Job created p99, burst (watch)", _get(b, "operator", "assigned_to_job_created_s", "p99"), None,
         _get(b, "naive", "assigned_to_job_created_s", "p99"), "ms", ("<=", 1.0), "≤ 1 s"),
        ("P2 assigned → Job created p50, sustained (watch)", _get(s, "operator", "assigned_to_job_created_s", "p50"),
         None, _get(s, "naive", "assigned_to_job_created_s", "p50"), "ms", ("<=", 0.1), "≤ 100 ms"),
        ("P2 assigned → Job created p99, sustained (watch)", _get(s, "operator", "assigned_to_job_created_s", "p99"),
         None, _get(s, "naive", "assigned_to_job_created_s", "p99"), "ms", ("<=", 1.0), "≤ 1 s"),
        ("P2 same, operator's histogram p50 / p99, sustained",
         _pair(_get(s, "operator", "histogram_assigned_to_job_created_s")), None, None, "", None, ""),
        (f"P2 assigned → Job created p50, light load {li.get('offered_per_second')}/s (watch)",
         _get(li, "operator", "assigned_to_job_created_s", "p50"), None,
         _get(li, "naive", "assigned_to_job_created_s", "p50"), "ms", ("<=", 0.1), "≤ 100 ms"),
        (f"P2 assigned → Job created p99, light load {li.get('offered_per_second')}/s (watch)",
         _get(li, "operator", "assigned_to_job_created_s", "p99"), None,
         _get(li, "naive", "assigned_to_job_created_s", "p99"), "ms", ("<=", 1.0), "≤ 1 s"),
        ("P2 same, operator's histogram p50 / p99, light load",
         _pair(_get(li, "operator", "histogram_assigned_to_job_created_s")), None, None, "", None, ""),
        ("Operator's own share of a launch p50 / p99 (assigned → create sent): burst; sustained; light",
         "; ".join(_pair(_get(x, "operator", "histogram_own_share_s")) or "—" for x in (b, s, li)), None, None, "",
         None, "p50 ≤ 20 ms, p99 ≤ 100 ms"),
        ("apiserver's own POST jobs latency p50 / p99: burst; sustained; light",
         "; ".join(_pair(_get(x, "operator", "apiserver_job_create_s")) or "—" for x in (b, s, li)), None,
         "; ".join(_pair(_get(x, "naive", "apiserver_job_create_s")) or "—" for x in (b, s, li)), "", None, ""),
        ("P3 Kubernetes requests per process, sustained (no streams)", _get(s, "operator", "kube_requests_per_process"),
         None, _get(s, "naive", "kube_requests_per_process"), "", ("<=", 6), "≤ 6"),
        ("P3 log streams per process, sustained", _get(s, "operator", "log_streams_per_process"), None,
         _get(s, "naive", "log_reads_per_process"), "", None, ""),
        ("P3 periodic requests per in-flight process per minute",
         _get(p4, "steady", "periodic_requests_per_in_flight_process_per_minute"), None,
         _get(s, "naive", "polls_per_running_process_per_minute"), "", ("<=", 0), "0"),
        (f"P4 processes in flight reached (target {p4.get('target')})", p4.get("reached_in_flight"), None, None, "",
         (">=", p4.get("target") or 5000), f"{p4.get('target')}"),
        ("P4 event-loop lag p99, steady (histogram)", _get(p4, "steady", "event_loop_lag_s", "p99"), None, None, "ms",
         ("<=", 0.1), "≤ 100 ms"),
        ("P4 event-loop lag p99, during the ramp (histogram)", _get(p4, "ramp", "event_loop_lag_s", "p99"), None, None,
         "ms", None, ""),
        ("P4 operator RSS max (MiB)", p4.get("rss_mib_max"), None, None, "", ("<=", 512), "≤ 512"),
        ("P4 ramp: Jobs created per second", _get(p4, "ramp", "jobs_per_second"), None, None, "", None, ""),
        (f"P5 SIGKILL with in flight (target {p5.get('processes')})", p5.get("in_flight_at_kill"), None, None, "",
         (">=", p5.get("processes") or 1000), f"{p5.get('processes')}"),
        ("P5 kill → all re-adopted (incl. operator start)", p5.get("kill_to_all_readopted_s"), None, None, "s",
         ("<=", 10), "≤ 10 s"),
        ("P5 liveness up → all re-adopted", p5.get("liveness_to_all_readopted_s"), None, None, "s", None, ""),
        ("P5 log lines lost", p5.get("log_lines_lost"), None, None, "", ("<=", 0), "0"),
        ("P5 log lines duplicated", p5.get("log_lines_duplicated"), None, None, "", ("<=", 0), "0"),
        ("P5 duplicate executions (processes with > 1 Job)", p5.get("processes_with_more_than_one_job"), None, None,
         "", ("<=", 0), "0"),
        ("P5 processes succeeded", p5.get("succeeded"), None, None, "", None, ""),
        (f"P6 real node: assigned → container running p50, one at a time ({p6.get('processes')})",
         _get(p6, "assigned_to_container_running_s", "p50"), None, None, "ms", None, ""),
        (f"P6 real node: assigned → container running p99, one at a time ({p6.get('processes')})",
         _get(p6, "assigned_to_container_running_s", "p99"), None, None, "ms", ("<=", 5.0), "≤ 5 s (pod-startup SLO)"),
        (f"P6 real node: assigned → container running p50, {p6.get('batch')} at once",
         _get(p6, at_once, "p50"), None, None, "ms", None, ""),
        (f"P6 real node: assigned → container running p99, {p6.get('batch')} at once",
         _get(p6, at_once, "p99"), None, None, "ms", ("<=", 5.0), "≤ 5 s (pod-startup SLO)"),
        ("P6 real node, funcspecs with an env (no second look): p50 one at a time",
         _get(p6, "with_env", "assigned_to_container_running_s", "p50"), None, None, "ms", None, ""),
        (f"P6 real node, funcspecs with an env: p99, {p6.get('batch')} at once",
         _get(p6, "with_env", at_once, "p99"), None, None, "ms", ("<=", 5.0), "≤ 5 s (pod-startup SLO)"),
        (f"Soak ({soak_run}): processes submitted", sk.get("submitted"), None, None, "", None, ""),
        ("Soak: processes not ended (lost)", sk.get("not_final"), None, None, "", ("<=", 0), "0"),
        ("Soak: ends the faults do not explain", sk.get("unexplained"), None, None, "", ("<=", 0), "0"),
        ("Soak: processes run in more than one Job", sk.get("ran_in_more_than_one_job"), None, None, "",
         ("<=", 0), "0"),
        ("Soak: log lines lost + duplicated",
         (sk["log_lines_lost"] + sk["log_lines_duplicated"]) if "log_lines_lost" in sk else None, None, None, "",
         ("<=", 0), "0"),
        ("Soak: operator RSS, last ÷ first window", _get(sk, "rss", "last_over_first"), None, None, "",
         ("<=", 1.1), "≤ 1.1"),
        ("Soak: the same, the first window from the start (warm-up included)",
         _get(sk, "rss_warmup_included", "last_over_first"), None, None, "", None, ""),
    ]
    return out


def _pair(h: Any) -> str | None:
    if not isinstance(h, dict):
        return None
    return f"{_fmt(h.get('p50'), 'ms')} / {_fmt(h.get('p99'), 'ms')}"


def baseline0(data: dict[str, Any]) -> dict[str, Any]:
    """Baseline 0 (the Kubernetes ceiling) of the figures it has, by figure name."""
    r = data.get("results", {})
    names = [row[0] for row in rows(data)]
    values = {names[0]: _get(r, "p1_burst", "kube_ceiling", "jobs_per_second"),
              next(n for n in names if n.startswith("P1 burst: CPU seconds")):
                  _get(r, "p1_burst", "kube_ceiling", "cpu_seconds_per_process", "all"),
              next(n for n in names if n.startswith("P1 burst: processes/s these cores")):
                  cpu_bound(_get(r, "p1_burst", "kube_ceiling", "cpu_seconds_per_process"),
                            (data.get("meta") or {}).get("cpus") or 2),
              next(n for n in names if n.startswith("P1 highest")):
                  _get(r, "p1_steps", "kube_ceiling", "highest_rate_held")}
    return {name: value for name, value in values.items() if value is not None}


def table(data: dict[str, Any]) -> str:
    header = ("figure", "operator", "baseline 0", "op ÷ b0", "baseline 1", "baseline 2", "op ÷ b1", "op ÷ b2",
              "target", "")
    zero = baseline0(data)
    body = []
    for name, op, b1, b2, unit, target, target_text in rows(data):
        b0 = zero.get(name)
        body.append((name, _fmt(op, unit), _fmt(b0, unit) if b0 is not None else "",
                     _ratio(op, b0) if b0 is not None else "", _fmt(b1, unit) if b1 is not None else "",
                     _fmt(b2, unit) if b2 is not None else "", _ratio(op, b1) if b1 is not None else "",
                     _ratio(op, b2) if b2 is not None else "", target_text, _verdict(op, target)))
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    notes = ["", "baseline 0: the same Jobs created by a bare loop with the operator's client, no Colonies "
                 "(the Kubernetes ceiling);",
             "baseline 1: minimal async executor, assign + close, no Kubernetes (the Colonies ceiling);",
             "baseline 2: pycolonies + synchronous kubernetes client, a thread per process (tutorial style).",
             "Ratios are operator ÷ baseline: above 1 is better for rates, below 1 is better for times and counts.",
             "(watch) = Colonies' start time of the process → our Job watch saw the Job, same machine clock."]
    errors = data.get("results", {}).get("errors")
    if errors:
        notes += ["", "phases that failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items())]
    return "\n".join(lines + notes) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = data.get("series", {})
    if set(series) == {"soak_rss"} and not _get(data, "results", "p1_steps"):  # `--phases soak`
        fig, ax = plt.subplots(figsize=(14, 5.5))
        _plot_soak(ax, series["soak_rss"], _get(data, "results", "soak") or {})
        _save(fig, path)
        return
    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    colors = {"operator": "tab:blue", "kube_ceiling": "tab:purple", "ceiling": "tab:green", "naive": "tab:red"}
    labels = {"operator": "operator", "kube_ceiling": "baseline 0 (the same Jobs, no Colonies)",
              "ceiling": "baseline 1 (assign+close, no k8s)",
              "naive": "baseline 2 (pycolonies + kubernetes, threads)"}

    def per_second(times: list[float], width: float) -> tuple[list[float], list[float]]:
        if not times:
            return [], []
        bins = [0.0] * (int(max(times) / width) + 1)
        for t in times:
            bins[max(0, int(t / width))] += 1 / width
        return [i * width for i in range(len(bins))], bins

    rates = [(axes[0][0], "burst", "P1 burst: launches per second, 0.5 s bins (t = first launch)", 0.5)]
    if series.get("sustained") or not _get(data, "results", "p1_steps"):
        rates.append((axes[0][1], "sustained", "P1 sustained: launches per second (t = first submission)", 1.0))
    else:  # a run without the sustained phase shows its steps there
        _plot_steps(axes[0][1], data["results"]["p1_steps"], colors, labels)
    for ax, key, title, width in rates:
        for kind, times in (series.get(key) or {}).items():
            x, y = per_second(times, width)
            ax.step(x, y, where="post", color=colors.get(kind), label=f"{labels.get(kind, kind)} ({len(times)})")
        if key == "sustained":
            rate = _get(data, "results", "p1_sustained", "offered_per_second")
            if rate:
                ax.axhline(rate, color="grey", linestyle=":", label=f"offered {rate}/s")
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.set_ylabel("Jobs created (baseline 1: assigns) per second")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)

    ax = axes[1][0]
    for key, label, color, style in (("latency_light_operator", "operator, light load", "tab:blue", ":"),
                                     ("latency_burst_operator", "operator, burst", "tab:blue", "-"),
                                     ("latency_sustained_operator", "operator, sustained", "tab:blue", "--"),
                                     ("latency_light_naive", "baseline 2, light load", "tab:red", ":"),
                                     ("latency_burst_naive", "baseline 2, burst", "tab:red", "-"),
                                     ("latency_sustained_naive", "baseline 2, sustained", "tab:red", "--")):
        values = sorted(v * 1000 for v in series.get(key) or [] if v > 0)
        if values:
            ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], color=color, linestyle=style,
                    label=f"{label} (p50 {values[len(values) // 2]:.0f} ms)")
    ax.axvline(100, color="grey", linestyle=":", label="target p50 100 ms")
    ax.axvline(1000, color="grey", linestyle="-.", label="target p99 1 s")
    ax.set_xscale("log")
    ax.set_title("P2: assigned → Job created (CDF)")
    ax.set_xlabel("milliseconds (log)")
    ax.set_ylabel("fraction of processes")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    if not series.get("scale_ramp") and series.get("soak_rss"):  # a run without the scale phase shows its soak
        _plot_soak(ax, series["soak_rss"], _get(data, "results", "soak") or {})
    else:
        _plot_ramp(ax, series.get("scale_ramp") or [], _get(data, "results", "p4_scale", "target"))
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_steps(ax: Any, steps: dict[str, Any], colors: dict[str, str], labels: dict[str, str]) -> None:
    """p99 submitted → Job created per offered rate, for each contender, against the 1 s limit."""
    for kind in ("operator", "kube_ceiling", "naive"):
        held = [(st["rate"], st["submitted_to_job_created_s"]["p99"] * 1000) for st in _get(steps, kind, "steps") or []
                if _get(st, "submitted_to_job_created_s", "p99") is not None]
        if held:
            ax.plot([r for r, _ in held], [ms for _, ms in held], marker="o", color=colors.get(kind),
                    label=f"{labels.get(kind, kind)}: held {_get(steps, kind, 'highest_rate_held')}/s")
    ax.axhline(1000 * (steps.get("p99_limit_s") or 1.0), color="grey", linestyle=":", label="limit p99 1 s")
    ax.set_yscale("log")
    ax.set_title(f"P1 steps: p99 submitted → Job created, {steps.get('step_seconds')} s per offered rate")
    ax.set_xlabel("offered processes per second")
    ax.set_ylabel("p99 milliseconds (log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def _plot_soak(ax: Any, rss: list[list[float]], soak: dict[str, Any]) -> None:
    """The operator's RSS through the soak, with a line at each fault."""
    ax.plot([t for t, _ in rss], [mib for _, mib in rss], color="tab:blue", label="operator RSS (MiB)")
    for i, fault in enumerate(soak.get("faults") or []):
        ax.axvline(fault["at_s"], color="tab:red", alpha=0.4, linestyle=":", label="a fault" if i == 0 else None)
        ax.annotate(fault["fault"], (fault["at_s"], 0), xycoords=("data", "axes fraction"), rotation=90,
                    fontsize=6, va="bottom", ha="right")
    settings = soak.get("settings") or {}
    if warmup := settings.get("warmup"):
        ax.axvspan(0, warmup, color="tab:gray", alpha=0.15, label="warm-up (no faults, not in the windows)")
    after = f" after {warmup:.0f} s of warm-up" if warmup else ""
    ax.set_title(f"Soak: {settings.get('seconds', 0):.0f} s at {settings.get('rate')}/s{after}, "
                 f"{len(soak.get('faults') or [])} faults; lost {soak.get('log_lines_lost')} lines, "
                 f"{soak.get('unexplained')} unexplained ends")
    ax.set_xlabel("seconds since the soak began")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8)  # between the RSS above and the faults' names below


def _plot_ramp(ax: Any, ramp: list[list[float]], target: Any) -> None:
    """P4: Jobs, running pods and processes in flight through the ramp, and the operator's RSS."""
    if ramp:
        t = [p[0] for p in ramp]
        ax.plot(t, [p[1] for p in ramp], label="Jobs created", color="tab:purple")
        ax.plot(t, [p[2] for p in ramp], label="pods Running", color="tab:orange")
        ax.plot(t, [p[3] for p in ramp], label="processes in flight (operator)", color="tab:blue")
        ax.set_ylabel("count")
        twin = ax.twinx()
        twin.plot(t, [p[4] for p in ramp], color="tab:grey", linestyle=":", label="operator RSS (MiB)")
        twin.set_ylabel("operator RSS (MiB)")
        twin.legend(loc="lower right", fontsize=8)
    ax.set_title(f"P4: ramp to {target} in flight")
    ax.set_xlabel("seconds since submission")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
