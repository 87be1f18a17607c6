"""The command line as a user meets it: help and defaults for every option, clear errors
before any long work, the eval table explained."""

from __future__ import annotations

import argparse

import pytest

from mixllm import cli
from mixllm.router import DEFAULT_LAM


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    raise AssertionError("no subcommands")


def test_every_option_has_help_and_shows_its_default():
    subs = _subparsers(cli.build_parser())
    assert {"eval", "fit", "route", "experiment", "static-table", "serve", "info",
            "bench"} <= set(subs)
    for name, p in subs.items():
        text = p.format_help()
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help, f"mixllm {name} {a.option_strings or a.dest}: no help text"
            if a.option_strings and a.default not in (None, False) and \
                    a.default is not argparse.SUPPRESS:
                formatted = p._get_formatter()._get_help_string(a)
                assert "default" in formatted, f"mixllm {name} {a.option_strings}: no default"
        assert "(default: None)" not in text, name
    fit = subs["fit"].format_help()
    assert f"(default: {DEFAULT_LAM})" in fit


def _err(argv, capsys) -> str:
    assert cli.main(argv) == 2
    return capsys.readouterr().err


def test_route_refuses_an_empty_prompt_and_a_missing_state(tmp_path, capsys):
    assert "prompt 1 is empty" in _err(["route", "--state", str(tmp_path), ""], capsys)
    assert "prompt 2 is empty" in _err(["route", "--state", str(tmp_path), "ok", "  "], capsys)
    err = _err(["route", "--state", str(tmp_path / "nope"), "hello"], capsys)
    assert "no router in" in err and "mixllm fit" in err and "Errno" not in err
    with pytest.raises(SystemExit):  # lam must be > 0
        cli.main(["route", "--state", str(tmp_path), "--lam", "0", "hello"])


def test_output_paths_are_checked_before_the_run(tmp_path, monkeypatch, capsys):
    def never(*a, **k):
        raise AssertionError("data loaded before the output paths were checked")

    monkeypatch.setattr(cli, "_load", never)
    train = str(tmp_path / "train.csv")
    no = tmp_path / "no"
    assert "does not exist" in _err(["eval", "--train", train, "--reference", "x",
                                     "--json", str(no / "r.json")], capsys)
    assert "is a folder" in _err(["eval", "--train", train, "--reference", "x",
                                  "--plot", str(tmp_path)], capsys)
    (tmp_path / "afile").write_text("x")
    assert "not a folder" in _err(["fit", "--train", train, "--out",
                                   str(tmp_path / "afile")], capsys)
    assert "does not exist" in _err(["experiment", "main", "--data", train, "--reference", "x",
                                     "--markdown", str(no / "r.md")], capsys)


def test_output_paths_are_tried_not_judged_by_permission_bits(tmp_path, monkeypatch, capsys):
    # Root passes os.access on a read-only mount: the check creates (and removes) a file.
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(30, "Read-only file system")

    def never(*a, **k):
        raise AssertionError("data loaded before the output paths were checked")

    monkeypatch.setattr(cli, "_load", never)
    train = str(tmp_path / "train.csv")
    (tmp_path / "afile").write_text("x")
    assert "afile is not a folder" in _err(["fit", "--train", train, "--out",
                                            str(tmp_path / "afile" / "sub")], capsys)
    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", refuse)
        assert "cannot write in" in _err(["fit", "--train", train, "--out",
                                          str(tmp_path / "new" / "router")], capsys)
        assert "not writable" in _err(["eval", "--train", train, "--reference", "x",
                                       "--json", str(tmp_path / "r.json")], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no probe left behind


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    err = _err(["eval", "--train", str(tmp_path / "none.csv"), "--reference", "x"], capsys)
    assert err.startswith("mixllm eval: error: training data not found:") and "Errno" not in err


def test_eval_table_states_what_was_left_out_and_explains_itself(capsys):
    reach = {"90": 6.4, "95": 30.2, "97.25": None, "100": None}
    cli._print_report({"reference": "big", "n_train": 2039, "n_test": 504,
                       "n_test_dropped": 6, "online": None, "tau": "inf",
                       "routers": {"mixllm": {"aiq": 0.958, "cost_to_reach": reach}}})
    out = capsys.readouterr().out
    assert "6 of 510 test prompts left out" in out and "quality or cost is missing" in out
    assert "online learning over the test stream: off" in out and "None" not in out
    assert "latency tolerance: none" in out
    assert "AIQ: the area under" in out and "'-': the router never reaches" in out
    assert "mixllm" in out and "  -  " in out


def test_plot_labels_do_not_overlap_and_stay_inside(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mixllm.evaluation.plot import _place_labels, plot_report

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.set_xscale("log")
    # a tight cluster, as code-llama and llama-2-70b are on RouterBench
    singles = [(f"model-{i}-with-a-long-name", (6.0 + 0.3 * i, 70.0 + 0.2 * i))
               for i in range(4)] + [("edge", (100.0, 60.0))]
    for _, (c, q) in singles:
        ax.scatter(c, q)
    ax.set_xlim(1, 120)
    ax.set_ylim(55, 110)
    _place_labels(fig, ax, singles)
    r = fig.canvas.get_renderer()
    frame = ax.get_window_extent(r)
    boxes = [t.get_window_extent(r) for t in ax.texts]
    assert len(boxes) == len(singles)
    for i, b in enumerate(boxes):
        assert frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
        assert not any(b.overlaps(o) for o in boxes[:i])
    plt.close(fig)
    report = {"reference": "big", "n_test": 10, "routers": {
        "mixllm": {"curve": [{"cost_pct": 5, "quality_pct": 80}, {"cost_pct": 50,
                                                                  "quality_pct": 99}]},
        "task-best": {"curve": [{"cost_pct": 5, "quality_pct": 79}, {"cost_pct": 60,
                                                                     "quality_pct": 98}]},
        "big": {"curve": [{"cost_pct": 100, "quality_pct": 100}]}}}
    plot_report(report, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_data_keeps_embeddings_in_the_user_cache_and_shows_progress(tmp_path, monkeypatch,
                                                                        capsys):
    """The default encoder of a TextRouter caches on disk (as the command line does): a second
    fit of the same prompts, in a fresh pipeline, embeds nothing."""
    import numpy as np

    from mixllm import LLM
    from mixllm.data import RoutingData
    from mixllm.text.pipeline import PipelineConfig, TextRouter

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    pool = [LLM("a", 1.0, 1.0), LLM("b", 0.1, 0.1)]
    n = 12
    data = RoutingData([f"p{i}" for i in range(n)], [f"question number {i}" for i in range(n)],
                       ["a", "b"], np.tile([0.9, 0.4], (n, 1)),
                       input_tokens=np.full(n, 4.0), output_tokens=np.full((n, 2), 20.0),
                       task=["t"] * n, pool=pool)
    tr = TextRouter(pool, PipelineConfig(tags=False))
    tr.fit_data(data, progress=True)
    err = capsys.readouterr().err
    assert "embedding" in err and "fitting router" in err
    again = TextRouter(pool, PipelineConfig(tags=False))
    again.fit_data(data)
    info = again.encoder.cache_info()
    assert info.misses == 0 and info.disk_hits == n
    assert (tmp_path / "xdg" / "mixllm" / "embeddings").is_dir()


def test_fit_reports_each_cross_validation_fold_then_the_final_fit(capsys):
    """The feature and ridge choice is most of a fit's time: progress moves with each of its
    folds, then with the final fit (not one step that sits still for a minute)."""
    import numpy as np

    from mixllm import LLM
    from mixllm.data import RoutingData
    from mixllm.text.pipeline import PipelineConfig, TextRouter
    from fakes import HashEncoder

    rng = np.random.default_rng(0)
    pool = [LLM("a", 1.0, 1.0), LLM("b", 0.1, 0.1)]
    n = 40
    prompts = [f"question {i} about topic {i % 4}" for i in range(n)]
    q = rng.uniform(0, 1, (n, 2))
    steps = []
    tr = TextRouter(pool, PipelineConfig(tags=False), HashEncoder())
    tr.fit(tr.embed(prompts), q, np.full((n, 2), 20.0), None,
           on_step=lambda what, done, total: steps.append((what, done, total)))
    assert steps == [("choosing features", i, 5) for i in range(1, 6)] + [("fitting", 1, 1)]
    fixed = TextRouter(pool, PipelineConfig(tags=False, features="embedding", ridge=10.0),
                       HashEncoder())
    steps.clear()
    fixed.fit(fixed.embed(prompts), q, np.full((n, 2), 20.0), None,
              on_step=lambda what, done, total: steps.append((what, done, total)))
    assert steps == [("fitting", 1, 1)]
    data = RoutingData([f"p{i}" for i in range(n)], prompts, ["a", "b"], q,
                       input_tokens=np.full(n, 4.0), output_tokens=np.full((n, 2), 20.0),
                       task=["t"] * n, pool=pool)
    TextRouter(pool, PipelineConfig(tags=False), HashEncoder()).fit_data(data, progress=True)
    err = capsys.readouterr().err
    assert "choosing features" in err and "6/6" in err


def test_no_repeats_drops_the_repeat_blocks():
    from mixllm.text.pipeline import PipelineConfig

    parser = cli.build_parser()
    base = ["eval", "--train", "x", "--reference", "r"]
    assert cli._config(parser.parse_args(base)).duplicates == PipelineConfig().duplicates
    assert cli._config(parser.parse_args(base + ["--no-repeats"])).duplicates is None
