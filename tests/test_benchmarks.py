"""The scaling benchmark on a tiny grid: results, agreement with NumPy, resume, report;
its verdicts, legend, table widths, progress and memory measurement."""

import json
import re

import numpy as np
import pytest

from benchmarks import harness, report, scaling


def test_numpy_baseline_agrees_with_reference(rng):
    from conftest import ref_krum, ref_sq_euclidean

    x = rng.standard_normal((9, 30)).astype(np.float32)
    np.testing.assert_allclose(scaling.np_sq_distances(x), ref_sq_euclidean(x), rtol=1e-4, atol=1e-4)
    d = ref_sq_euclidean(x)
    np.testing.assert_allclose(scaling.np_krum_scores(d, 2), ref_krum(d, 2), rtol=1e-10)


def test_scaling_writes_resumable_results(tmp_path, capsys):
    path = tmp_path / "scaling.jsonl"
    argv = ["--clients", "12", "16", "--dim", "300", "--project", "50", "--repeats", "1",
            "--attack", "gaussian", "--no-memory", "--json", str(path)]
    cells = scaling.main(argv)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and [c["n"] for c in cells] == [12, 16]
    cell = json.loads(lines[0])
    assert cell["f"] == 2 and cell["d"] == 300
    stages = {s["stage"]: s for s in cell["stages"]}
    assert {"projection", "gram floor", "distances+krum", "select (k=50)"} <= set(stages)
    assert stages["distances+krum"]["qkrum_s"] > 0 and stages["distances+krum"]["numpy_s"] > 0
    for det in cell["detection"].values():
        # Gaussian noise with std 1 is a blatant outlier next to unit-norm honest updates.
        assert det["accuracy"] == 1.0 and det["agrees_with_numpy"]
    # Four stage targets, two per MultiSignal round (time and determinism; natural and
    # evasion forced), and the forced round's QUBO objective against the annealer's 1000
    # reads x 100 sweeps (the natural round is settled without a QUBO); no memory stage
    # with --no-memory.
    verdicts = scaling.targets(cell)
    assert cell["memory"] is None and len(verdicts) == 9
    (objective,) = [v for v in verdicts if "QUBO objective vs SA" in v.name]
    forced = next(r for r in cell["rounds"] if "evasion" in r["round"])
    assert objective.ok and forced["sampler"] == "ExchangeTabuSampler"
    assert forced["objective_value"] <= forced["reference_objective"] + 1e-9 * abs(forced["reference_objective"])
    assert all(r["deterministic"] for r in cell["rounds"]) and {r["round"] for r in cell["rounds"]} == {
        "multisignal", "multisignal (evasion forced)"}
    out = capsys.readouterr().out
    assert "Verdicts:" in out and "Growth with n" in out

    # Rerunning the same sweep finishes nothing new: both cells are read back.
    again = scaling.main(argv)
    assert len(path.read_text().splitlines()) == 2
    assert [c["stages"] for c in again] == [c["stages"] for c in cells]

    # An interrupted write (half a line) is skipped, and that cell is redone.
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    scaling.main(argv)
    redone = path.read_text().splitlines()
    assert len(redone) == 3 and json.loads(redone[2])["n"] == 16  # line 2 is the torn one

    table = report.growth_table(report.load(path))
    assert "distances+krum" in table and "16" in table
    png = tmp_path / "growth.png"
    capsys.readouterr()
    report.main([str(path), "--plot", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "Verdicts, n=12 attack=gaussian" in out and "Verdicts, n=16 attack=gaussian" in out
    assert len(re.findall(r"^  (PASS|FAIL) ", out, re.MULTILINE)) == 18


def _stage_cell(ratios, n=500):
    """A cell whose distances+krum and projection stages have these paired ratios."""
    paired = harness.paired_stats(ratios)
    stage = {"qkrum_s": 0.3, "numpy_s": 0.3, "ratio": paired["median"], "ratio_q1": paired["q1"],
             "ratio_q3": paired["q3"], "qkrum_peak_x": 1.0, "numpy_peak_x": 1.0}
    return {"n": n, "seed": 0, "rounds": [], "stages": [
        {"stage": "distances+krum", **stage}, {"stage": "projection", **stage},
        {"stage": "gram floor", "numpy_s": 0.3, "numpy_peak_x": 1.0}]}


def test_no_slower_than_numpy_judges_the_median_paired_ratio():
    # Median 11 % slower, first quartile 0.90: the old rule (q1 <= 1) passed this; it must fail.
    ratios = [0.85, 0.95, 1.11, 1.2, 1.3]
    paired = harness.paired_stats(ratios)
    assert paired["median"] == pytest.approx(1.11) and paired["q1"] == pytest.approx(0.9)
    verdicts = {v.name: v for v in scaling.targets(_stage_cell(ratios))}
    slow = verdicts["distances+krum no slower than NumPy"]
    assert not slow.ok and slow.line().startswith("FAIL distances+krum no slower than NumPy: median paired ratio 1.110")
    assert "(target <= 1.000)" in slow.line()
    fast = {v.name: v for v in scaling.targets(_stage_cell([0.9, 0.95, 0.98, 1.05, 1.4]))}
    assert fast["distances+krum no slower than NumPy"].ok  # median 0.98, third quartile above 1
    assert fast["projection no slower than NumPy"].line().startswith("PASS projection no slower than NumPy: ")


def test_memory_verdict_is_against_half_the_input_in_steady_state():
    cell = _stage_cell([1.0])
    cell["memory"] = {"k": 1000, "input_bytes": 100, "first_x": 0.9, "steady_x": 0.3}
    (ok,) = [v for v in scaling.targets(cell) if "peak memory above the input" in v.name]
    assert ok.ok and ok.line() == ("PASS select+aggregate peak memory above the input: 0.30x per call (0.90x on the "
                                   "first, compiling) (target <= 0.5x)")
    cell["memory"] = {"k": 1000, "input_bytes": 100, "first_x": 0.45, "steady_x": 0.51}
    assert not [v for v in scaling.targets(cell) if "peak memory above the input" in v.name][0].ok


def test_wide_tables_are_split_to_fit_120_columns():
    columns = [("stage", "stage")] + [(f"a rather long column header {i}", f"c{i}") for i in range(8)]
    rows = [{"stage": "distances+krum (jit)", **{f"c{i}": 0.123 * i for i in range(8)}}]
    table = harness.format_table(rows, columns)
    assert max(map(len, table.splitlines())) <= harness.MAX_TABLE_WIDTH
    # Every column is still there, and every part repeats the first column.
    for i in range(8):
        assert f"a rather long column header {i}" in table
    parts = table.split("\n\n")
    assert len(parts) > 1 and all(part.startswith("stage") for part in parts)
    assert harness.format_table(rows[:1], columns[:3]).count("\n\n") == 0  # narrow: one table


def test_main_job_at_a_tiny_size(capsys):
    """The main job's output: a progress bar over the stages, tables <= 120 columns with a
    legend of every column, one PASS/FAIL line per target, and the memory stage."""
    argv = ["--clients", "20", "--dim", "300", "--project", "50", "--repeats", "2", "--round-repeats", "2"]
    (cell,) = scaling.main(argv)
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert max(len(line) for line in out.splitlines()) <= 120
    # Progress: every stage of the plan was named on the bar (stderr), and it ended complete.
    plan = scaling.cell_plan(50, 2)
    for stage in plan:
        assert f"n=20 alie: {stage}" in err, stage
    assert f"{len(plan)}/{len(plan)} stages" in err
    # Legend: each column header of the stage table is explained, with its better direction.
    for header in ("stage", "qkrum s", "numpy s", "ratio", "ratio IQR", "qkrum mem", "numpy mem",
                   "acc, f1", "agg err", "above input"):
        assert re.search(rf"^  {re.escape(header)}: ", out, re.MULTILINE), header
    assert out.count("is better") >= 8
    # Verdicts: one plain line per target, PASS or FAIL, measured value and target.
    verdicts = scaling.targets(cell)
    lines = re.findall(r"^  (?:PASS|FAIL) .+: .+ \(target .+\)$", out, re.MULTILINE)
    # Four stage targets, two per round, the forced round's QUBO objective, and the memory stage.
    assert len(lines) == len(verdicts) == 10 and lines == ["  " + v.line() for v in verdicts]
    assert any(line.startswith("  PASS MultiSignal round at n=20 under 10 s: ") for line in lines)
    mem = cell["memory"]
    assert mem["input_bytes"] == 20 * 300 * 4 and mem["first_extra_bytes"] is not None
    assert "Memory of MultiKrum's qkrum.select(x_np, f, project=50) + sel.aggregate(x_np)" in out


def test_run_cell_reports_each_stage_of_its_plan():
    seen = []
    scaling.run_cell(10, 2, 200, "gaussian", 20, 1, 0, round_repeats=2, progress=seen.append, memory=False)
    assert seen == scaling.cell_plan(20, 2, memory=False)


def _allocate(mib: int) -> dict:
    """Runs in a fresh process: allocate and free ``mib`` MiB inside PeakMemory, once with
    NumPy and once with JAX (an XLA buffer), after freeing as much first."""
    import jax.numpy as jnp

    from benchmarks.harness import PeakMemory

    out = {}
    for name, alloc in (("numpy", lambda: np.ones(mib * 2**20 // 8)),
                        ("jax", lambda: jnp.ones(mib * 2**20 // 4, jnp.float32).block_until_ready())):
        alloc()  # freed before the measurement: must not hide the next allocation
        with PeakMemory(release=True) as mem:
            a = alloc()
            del a
        out[name] = mem.peak_extra_bytes
    return out


def test_peak_memory_in_a_fresh_process_sees_numpy_and_xla_allocations(monkeypatch):
    from pathlib import Path

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    got = harness.run_in_subprocess("test_benchmarks:_allocate", {"mib": 128})
    for name in ("numpy", "jax"):
        assert got[name] is not None and 120 * 2**20 <= got[name] <= 400 * 2**20, (name, got[name] / 2**20)


def test_scaling_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        scaling.main(["--clients", "3"])
    assert "--clients must be >= 4" in capsys.readouterr().err


def test_annealer_benchmark_on_a_small_exact_instance(tmp_path, capsys):
    pytest.importorskip("dwave.samplers")
    from benchmarks import annealer

    path = tmp_path / "annealer.jsonl"
    argv = ["--clients", "8", "--reads", "40", "--sweeps", "50", "--repeats", "1", "--json", str(path)]
    (cell,) = annealer.main(argv)
    assert cell["certified"]  # n <= 20: the best known energy is the exact ground state
    rows = {r["run"]: r for r in cell["rows"]}
    assert set(rows) == {"qkrum (defaults)", "dwave-sa (defaults)", "qkrum single-flip", "dwave-sa, qkrum range"}
    ours = rows["qkrum (defaults)"]
    assert ours["best_energy"] == pytest.approx(cell["best_known"]) and ours["swaps_left"] == 0
    assert ours["swap_moves"] and not rows["qkrum single-flip"]["swap_moves"]
    for row in rows.values():
        assert 0 <= row["p_success"] <= 1 and row["best_energy"] >= cell["best_known"] - 1e-9
    assert "TTS99 dwave-sa / qkrum" in capsys.readouterr().out
    annealer.main(argv)  # resumed: nothing new
    assert len(path.read_text().splitlines()) == 1


def test_time_to_target_on_small_instances_with_an_exact_target(tmp_path, capsys):
    pytest.importorskip("dwave.samplers")
    from benchmarks import annealer
    from qkrum.anneal import exact_ground_state
    from qkrum.qubo import selection_problem

    path = tmp_path / "ttt.jsonl"
    argv = ["--time-to-target", "--clients", "20", "--instances", "random", "planted", "--repeats", "1",
            "--max-timeout", "3", "--json", str(path)]
    cells = annealer.main(argv)
    assert [(c["instance"], c["n"], c["m"]) for c in cells] == [("random", 20, 16), ("planted", 20, 16)]
    for cell in cells:
        D, m = annealer.ttt_distances(cell["instance"], 20, 0)
        Q, offset = selection_problem(D, m, keep_cardinality=True).qubo()
        optimum = exact_ground_state(Q, offset, cardinality=m).energy  # all C(20, 16) subsets
        # The target is the best energy found; none is below the exact optimum, and qkrum's
        # tabu search reaches it with one restart.
        assert cell["target"] == pytest.approx(optimum, rel=1e-12)
        assert all(r["best_energy"] >= optimum - 1e-9 for r in cell["rows"])
        tabu = [r for r in cell["rows"] if r["solver"] == "qkrum-tabu"]
        assert tabu[0]["params"] == {"num_reads": 1, "confirm": 0, "stall": 10} and all(r["hit"] for r in tabu)
        assert {r["params"].get("timeout") for r in cell["rows"] if r["solver"] == "dwave-tabu"} == {1, 3}
        ttt = cell["time_to_target_s"]
        assert ttt["qkrum-tabu"] == min(r["wall_s"] for r in tabu)
        # A sample with |S| != m scores on the penalised QUBO, so it can only miss.
        assert all(r["hit"] <= (r["size"] == m) for r in cell["rows"])
    out = capsys.readouterr().out
    assert "| instance | n | m | qkrum-tabu s" in out and "dwave-tabu / qkrum-tabu" in out
    annealer.main(argv)  # resumed: nothing new
    assert len(path.read_text().splitlines()) == 2


def test_tabu_tenure_benchmark_counts_restarts_at_the_exact_optimum(tmp_path, capsys):
    from benchmarks import tabu_tenure
    from qkrum.anneal import exact_ground_state

    path = tmp_path / "tenure.jsonl"
    argv = ["--clients", "16", "--fractions", "0.5", "--seeds", "3", "--tenures", "0", "4", "--restarts", "6",
            "--json", str(path)]
    (cell,) = tabu_tenure.main(argv)
    D = tabu_tenure.instance(16, 3)
    optimum = exact_ground_state(np.triu(D, 1), cardinality=8).energy  # all C(16, 8) subsets
    assert cell["best"] == pytest.approx(optimum, rel=1e-12)
    assert [r["tenure"] for r in cell["rows"]] == [0, 4]
    assert all(0 <= r["hits"] <= 6 for r in cell["rows"]) and max(r["hits"] for r in cell["rows"]) >= 1
    assert all((r["hits"] > 0) == (r["best_energy"] <= optimum + 1e-9) for r in cell["rows"])
    assert "restarts (of 6) at the best energy" in capsys.readouterr().out
    tabu_tenure.main(argv)  # resumed: nothing new
    assert len(path.read_text().splitlines()) == 1


def test_improving_swaps_counts_exchanges_that_lower_the_energy():
    from benchmarks.annealer import improving_swaps

    # E = x0 + 2 x1 + 3 x2; with x = (0, 1, 1), exchanging 1 or 2 for 0 lowers E: 2 swaps.
    Q = np.diag([1.0, 2.0, 3.0])
    assert improving_swaps(Q, np.array([0, 1, 1]), 1e-12) == 2
    assert improving_swaps(Q, np.array([1, 1, 0]), 1e-12) == 0


def test_cardinality_benchmark_compares_both_hot_ends(tmp_path, capsys):
    from benchmarks import cardinality

    path = tmp_path / "cardinality.jsonl"
    (cell,) = cardinality.main(["--clients", "12", "--reads", "20", "--sweeps", "30", "--repeats", "1",
                                "--json", str(path)])
    rows = {r["run"].split(" hot end")[0]: r for r in cell["rows"]}
    assert set(rows) == {"typical-exchange", "worst-case"}
    # Same cold end; the default's hot end is colder (a larger β) than the worst-case field's.
    assert rows["typical-exchange"]["beta"][1] == rows["worst-case"]["beta"][1]
    assert rows["typical-exchange"]["beta"][0] > rows["worst-case"]["beta"][0]
    for row in rows.values():
        assert 0 < row["p_success"] <= 1 and row["best_energy"] >= cell["best_known"] - 1e-9
    assert "paired" in capsys.readouterr().out
    cardinality.main(["--clients", "12", "--reads", "20", "--sweeps", "30", "--repeats", "1", "--json", str(path)])
    assert len(path.read_text().splitlines()) == 1  # resumed: nothing new


def test_attack_table_on_a_tiny_grid(tmp_path, capsys):
    from benchmarks import attack_table

    path = tmp_path / "attacks.jsonl"
    argv = ["--clients", "9", "--byzantine", "2", "--dim", "400", "--project", "50", "--rounds", "2",
            "--attack", "gaussian", "lie", "--methods", "multikrum", "qubo-paper", "multisignal-intra",
            "--json", str(path)]
    cells = attack_table.main(argv)
    by_attack = {c["attack"]: c["summary"] for c in cells}
    # Gaussian noise (std 1) is a blatant outlier: MultiKrum rejects it, while the paper's cut
    # objective rejects the f clients closest to everyone and keeps the outliers.
    assert by_attack["gaussian"]["multikrum"]["accuracy"] == 1.0
    assert by_attack["gaussian"]["qubo-paper"]["tp"] == 0
    assert sum(by_attack["gaussian"]["multisignal-intra"]["regimes"].values()) == 2
    out = capsys.readouterr().out
    assert "Detection accuracy (%)" in out and "F1 score (%)" in out
    attack_table.main(argv)
    assert len(path.read_text().splitlines()) == 2  # resumed: nothing recomputed
    table = report.attack_tables(report.load(path))
    assert "average" in table and "qubo-paper" in table


def test_robustness_benchmark_against_closed_forms(tmp_path, capsys):
    """IPM against the plain mean has the closed-form relative error (f / n)(1 + epsilon);
    a worst case is the largest mean error over the attacks; a rerun reads its rows back."""
    from benchmarks import robustness

    out = tmp_path / "rob.jsonl"
    argv = ["--dataset", "digits", "--clients", "6", "--byzantine", "1", "--warmup", "0", "--rounds", "1",
            "--defence", "mean", "median", "screened_multikrum_nnm (default)", "--attack", "ipm", "gaussian", "optimal_lie",
            "--points", "3", "--refine", "1", "--json", str(out), "--no-progress"]
    rows = robustness.main(argv)
    by = {(r["defence"], r["attack"]): r for r in rows}
    assert by[("mean", "ipm")]["error"] == pytest.approx(1 / 6 * 1.1, rel=1e-4)
    assert by[("mean", "ipm")]["detection_accuracy"] == pytest.approx(5 / 6)  # the mean rejects no one
    assert by[("median", "ipm")]["detection_accuracy"] is None  # a statistic selects no one
    assert by[("screened_multikrum_nnm (default)", "gaussian")]["detection_accuracy"] == 1.0  # std 1.0 noise: far out
    slot = int(np.random.default_rng(0).choice(6, 1, replace=False)[0])  # the benchmark's Byzantine slot
    assert by[("screened_multikrum_nnm (default)", "ipm")]["screened"] == [slot]  # -1.1 mu points away
    text = capsys.readouterr().out
    worst = max(("ipm", "gaussian", "optimal_lie"), key=lambda a: by[("median", a)]["error"])
    assert f"**{by[('median', worst)]['error']:.3f}** ({worst})" in text
    assert len(out.read_text().splitlines()) == 9
    again = robustness.main(argv)  # resumed: nothing recomputed, the same rows
    assert [r["error"] for r in again] == [r["error"] for r in rows]
    assert len(out.read_text().splitlines()) == 9


def test_screen_cost_benchmark_times_both_rules_on_the_same_round(tmp_path):
    from benchmarks import screen_cost

    out = tmp_path / "cost.jsonl"
    rows = screen_cost.main(["--dataset", "digits", "--clients", "10", "--repeats", "2", "--json", str(out)])
    by = {r["attack"]: r for r in rows}
    assert by["sign_flip"]["screened"] == 2  # f = 20 % of 10: every sign-flipped client is screened
    for r in rows:
        assert r["screened_s"] > 0 and r["multikrum_nnm_s"] > 0 and r["ratio_q1"] <= r["ratio_median"] <= r["ratio_q3"]
    assert len(out.read_text().splitlines()) == 2
    assert [r["ratio_median"] for r in screen_cost.main(["--dataset", "digits", "--clients", "10", "--repeats", "2",
                                                          "--json", str(out)])] == [r["ratio_median"] for r in rows]
