"""The device check's markdown report, from the dict ``device_check.py`` also writes as JSON.

Plain standard library: the report is written even when torch or the package fails to import. A step
that left no result shows as such; a step that did not pass shows the tail of its log.
"""

from __future__ import annotations

from typing import Any, Sequence

MIB = 2**20
_TITLES = {"env": "Environment", "tests": "Tests", "bench_sparse": "Sparse backbone",
           "train": "Training on the ModelNet40 sample", "scan": "Whole SemanticKITTI scan"}


def markdown(report: dict) -> str:
    ran = {step["name"] for step in report.get("steps", [])}
    settings = report.get("settings", {})
    parts = [f"# Device check: {settings.get('device', '?')}", _settings_lines(settings, report)]
    parts.append(_table("Steps", ["step", "status", "exit code", "seconds", "budget s"],
                        [[s["name"], s["status"], s["exit_code"], f"{s['seconds']:.1f}", s["budget_s"]]
                         for s in report.get("steps", [])]))
    for section, step in ((_environment, "env"), (_tests, "tests"), (_bench, "bench_sparse"), (_train, "train"),
                          (_scan, "scan")):
        payload = report.get(step)  # each step's results are stored under its name
        parts.append(section(payload) if payload else _missing(_TITLES[step], step, ran))
    failed = [s for s in report.get("steps", []) if s["status"] != "passed"]
    for step in failed:
        parts.append(f"## Log tail of `{step['name']}` ({step['status']})\n\n```\n{step.get('log_tail', '')}\n```")
    return "\n\n".join(part for part in parts if part) + "\n"


def _settings_lines(settings: dict, report: dict) -> str:
    lines = [f"- {key}: {value}" for key, value in settings.items()]
    total = report.get("total_s", 0.0)
    lines.append(f"- total: {total:.0f} s over {len(report.get('steps', []))} steps; all passed: "
                 f"{report.get('all_passed', False)}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value).replace("|", "\\|")


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], note: str = "") -> str:
    lines = [f"## {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _missing(title: str, what: str, ran: set[str]) -> str:
    if what not in ran:
        return f"## {title}\n\nNot run: the {what} step was not among this check's steps."
    return f"## {title}\n\nNo result: the {what} step did not write one (see Steps and the log tail below)."


def _environment(env: dict) -> str:
    rows = [["torch", env.get("torch")], ["torch CUDA build", env.get("cuda_build")], ["cuDNN", env.get("cudnn")],
            ["CUDA", f"{env.get('cuda_available')} ({env.get('cuda_status')})"]]
    rows += [[f"gpu {gpu['index']}", f"{gpu['name']}, {gpu['total_memory_bytes'] / 2**30:.1f} GiB, capability "
                                     f"{gpu['capability']}, {gpu['multiprocessors']} SMs"] for gpu in env.get("gpus", [])]
    rows += [[f"sparse backend ({b['device']})", f"{b['backend']}: {b['reason']}"] for b in env.get("sparse_backends", [])]
    rows += [[name, version] for name, version in env.get("packages", {}).items()]
    return _table("Environment (`image2point env --json`)", ["what", "value"], rows)


def _tests(tests: dict) -> str:
    counts = tests.get("counts", {})
    summary = ", ".join(f"{counts.get(key, 0)} {key}" for key in ("passed", "failed", "errors", "skipped"))
    lines = [f"## Tests\n\n{summary}"]
    if tests.get("skip_reasons"):
        lines.append(_table("Skip reasons", ["tests", "reason"],
                            [[item["tests"], item["reason"]] for item in tests["skip_reasons"]]).replace("## ", "### "))
    if tests.get("failed"):
        lines.append("### Failed\n\n" + "\n".join(f"- {item}" for item in tests["failed"]))
    return "\n\n".join(lines)


def _results(payload: dict, kind: str) -> list[dict]:
    return [item for item in payload.get("results", []) if item.get("kind") == kind]


def _bench(payload: dict) -> str:
    settings = payload.get("settings", {})
    title = (f"Sparse backbone on {settings.get('device')} ({settings.get('gpu', 'no GPU')}), plan "
             f"{settings.get('plan')}, backend {settings.get('backend')}")
    parts = [_table(title, ["workload", "description", "points", "sites"],
                    [[w["workload"], w["description"], w["points"], w["sites"]]
                     for w in _results(payload, "WorkloadInfo")])]
    parts.append(_table("Dense matmul", ["precision", "rows", "C", "GFLOP/s"],
                        [[d["precision"], d["rows"], d["channels"], d["gflops"]]
                         for d in _results(payload, "DeviceDenseResult")]).replace("## ", "### "))
    parts.append(_table(
        "Backbone time", ["workload", "pass", "mode", "precision", "median s", "GFLOP", "GFLOP/s", "% dense",
                          "peak MiB"],
        [[r["workload"], r["passes"], r["stride_mode"], r["precision"], r["median_s"], r["gflop"], r["gflops"],
          100 * r["gflops"] / r["dense_gflops"], None if r["peak_bytes"] is None else r["peak_bytes"] / MIB]
         for r in _results(payload, "DeviceRunResult")]).replace("## ", "### "))
    parts.append(_table("Kernel maps of one batch", ["workload", "mode", "median s"],
                        [[k["workload"], k["stride_mode"], k["median_s"]]
                         for k in _results(payload, "DeviceKernelMapResult")]).replace("## ", "### "))
    parts.append(_table("Output against fp32 (mean relative difference)", ["workload", "mode", "precision", "value"],
                        [[e["workload"], e["stride_mode"], e["precision"], e["relative_error"]]
                         for e in _results(payload, "PrecisionErrorResult")]).replace("## ", "### "))
    return "\n\n".join(parts)


def _train(payload: dict) -> str:
    note = (f"`{payload['recipe']}` on {payload['device']}, {payload['workers']} loader workers"
            f"{' (small)' if payload.get('small') else ''}. {payload['note']}; cold = the first epoch of a fresh "
            "run, warm = per epoch of a resumed run in the same process.")
    return _table("Training on the ModelNet40 sample", [
        "amp", "backbone", "train samples", "batch", "cold epoch s", "warm epoch s", "warm samples/s", "peak MiB",
        "losses finite"], [[r["amp"], r["backbone"], r["train_samples"], r["batch_size"], r["cold_epoch_s"],
                            r["warm_epoch_s"], r["warm_samples_per_s"], r["peak_allocated_mib"], r["loss_finite"]]
                           for r in payload["runs"]], note)


def _scan(payload: dict) -> str:
    note = (f"`{payload['recipe']}`, scan {payload['scan']}: {payload['points']:,} points, {payload['voxels']:,} "
            f"voxels at {payload['voxel_size']}, backbone {payload['backbone']}, backend {payload['backend']}, "
            f"median of {payload['repetitions']} after a warm-up; peak = allocated GPU memory of the call.")
    return _table("Whole SemanticKITTI scan", ["what", "seconds", "peak MiB"],
                  [[row["what"], row["seconds"], row["peak_allocated_mib"]] for row in payload["rows"]], note)
