"""The command line: help, output paths checked before any work, Ctrl-C."""
import os
import signal
import subprocess
import sys
import time

import pytest

import autograd.__main__ as cli
from autograd.__main__ import main
from helpers import python_handles_sigint


@pytest.fixture
def sigint():
    """SIGINT raises KeyboardInterrupt, as in a terminal, during the test."""
    with python_handles_sigint():
        yield


def test_the_top_level_help_lists_the_training_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "training options (autograd [train] [options])" in out
    for option in ("--example", "--steps", "--seed", "--engine", "--plot", "--no-progress"):
        assert option in out, option
    assert {"train", "graph", "derivatives"} <= set(out.replace(",", " ").replace("{", " ")
                                                     .replace("}", " ").split())


@pytest.mark.parametrize("argv, message", [
    (["--plot", "{tmp}/missing/picture.png"], "the directory '{tmp}/missing' does not exist"),
    (["--plot", "{tmp}/picture.txt"], "its extension '.txt' is not one of .png, .pdf, .svg"),
    (["--plot", "{tmp}/picture"], "its extension '(none)' is not one of"),
    (["--plot", "{tmp}"], "cannot write '{tmp}': it is a directory"),
    (["train", "--plot", "{tmp}/dir.png"], "cannot write '{tmp}/dir.png': it is a directory"),
    (["graph", "--output", "{tmp}/g.jpg"], "its extension '.jpg' is not one of .png, .svg, .pdf"),
    (["graph", "--output", "{tmp}/no/g.svg"], "the directory '{tmp}/no' does not exist"),
    (["derivatives", "--output", "{tmp}/no/d.png"], "the directory '{tmp}/no' does not exist"),
    (["derivatives", "--output", "{tmp}/d.dot"], "its extension '.dot' is not one of"),
    (["graph", "--output", ""], "cannot write '': it names no file"),
    (["graph", "--output", "{tmp}/g.png/"], "cannot write '{tmp}/g.png/': it names no file"),
    (["--plot", "{tmp}/"], "cannot write '{tmp}/': it names no file"),
])
def test_output_paths_are_checked_before_any_work(tmp_path, capsys, monkeypatch, argv, message):
    (tmp_path / "dir.png").mkdir()
    tmp = str(tmp_path)

    def no_work(args):
        raise AssertionError("the command ran")
    for name in ("_train_command", "_graph_command", "_derivatives_command"):
        monkeypatch.setattr(cli, name, no_work)
    with pytest.raises(SystemExit) as info:
        main([a.format(tmp=tmp) for a in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: " + ("cannot write " if "cannot" not in message else "") in err
    assert message.format(tmp=tmp) in err
    assert err.startswith("usage: autograd")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root may write anywhere")
def test_a_directory_that_cannot_be_written_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(SystemExit) as info:
            main(["--plot", str(locked / "p.png")])
    finally:
        locked.chmod(0o700)
    assert info.value.code == 2 and "permission denied" in capsys.readouterr().err


def test_a_good_path_in_any_case_is_accepted(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(cli, "_train_command", lambda args: ran.append(args.plot) or 0)
    assert main(["--plot", str(tmp_path / "p.PNG")]) == 0
    assert main(["--plot", "none"]) == 0
    assert ran == [str(tmp_path / "p.PNG"), "none"]


def test_ctrl_c_prints_the_summary_so_far_draws_it_and_exits_130(tmp_path, capsys, monkeypatch,
                                                                 sigint):

    def schedule(steps):
        def lr(k):
            if k == 5:
                signal.raise_signal(signal.SIGINT)      # Ctrl-C during step 5
            return 1.0 - 0.9 * k / steps
        return lr

    monkeypatch.setattr(cli, "_lr_schedule", schedule)
    picture = tmp_path / "moons.png"
    assert main(["--steps", "50", "--no-progress", "--plot", str(picture)]) == 130
    out = capsys.readouterr().out
    assert "interrupted after 6 of 50 steps" in out
    assert "final loss " in out
    assert f"picture written to {picture}" in out and picture.stat().st_size > 1000


def test_ctrl_c_before_the_first_step_exits_130(capsys, monkeypatch, sigint):

    def schedule(steps):
        def lr(k):
            raise KeyboardInterrupt
        return lr

    monkeypatch.setattr(cli, "_lr_schedule", schedule)
    assert main(["--steps", "50", "--no-progress", "--plot", "none"]) == 130
    out = capsys.readouterr().out
    assert "interrupted after 0 of 50 steps" in out and "final loss" not in out


def test_ctrl_c_outside_training_exits_130(capsys, monkeypatch):
    import autograd.data

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(autograd.data, "make_moons", interrupted)
    assert main(["--no-progress", "--plot", "none"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_sigint_to_the_program(tmp_path):
    """The real thing: `python -m autograd` gets SIGINT while it trains."""
    proc = subprocess.Popen([sys.executable, "-m", "autograd", "--steps", "10000000",
                             "--no-progress", "--plot", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path,
                            # as from a terminal, even where this process ignores SIGINT
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = proc.stdout.readline()          # printed just before training starts
        assert first.startswith("moons:"), first + proc.stderr.read()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted after " in out and "final loss " in out
    assert "Traceback" not in err


def test_graph_without_graphvizs_dot_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    # a machine without Graphviz's program: the command says so, no traceback
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["graph", "--output", str(tmp_path / "g.svg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("autograd graph: ") and "dot" in err and "Traceback" not in err
    assert err.count("\n") == 1 and not (tmp_path / "g.svg").exists()
