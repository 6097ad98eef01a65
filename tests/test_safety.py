"""Never destroy what is not ours; clean up after Ctrl-C, SIGTERM and SIGKILL.

``--force`` replaces only an edgekit artifact (every file listed in its edgekit.json) or an
empty folder, and refuses anything else before any work, deleting nothing. A killed export's
staging folder carries its owner process: SIGTERM and Ctrl-C remove it on the way out, and
the next export to the same OUT removes those of dead processes (SIGKILL) and says so, never
a live process's. Interrupted commands print one line and exit 130 (143 for SIGTERM).

The signal tests export tiny random models in a real subprocess whose postprocess hook
announces that the export is mid-way (a file appears) and then waits: the signal always
arrives inside the staged work, however fast or slow the machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgekit.errors import ConfigError
from edgekit.fileio import (
    STAGING_MARK,
    TRASH_MARK,
    Terminated,
    _host_key,
    _proc_stat,
    check_output_path,
    new_staging_folder,
    staged_artifact,
    sweep_stale_staging,
    terminate_cleanly,
)
from edgekit.progress import Progress
from tests.conftest import ROOT, error_line

HAS_PROC = Path("/proc/self/stat").is_file()

HOLD = '''
import os, time
from pathlib import Path


def hold(*args):
    """Say that the export is mid-way, then wait for the test's signal (bounded)."""
    Path(os.environ["EK_READY"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.05)
    raise RuntimeError("the test never sent its signal")
'''

GGUF_API = '''
import sys
sys.path.insert(0, sys.argv[3])
from hold import hold
from edgekit.exporters.gguf import export_gguf

export_gguf(sys.argv[1], sys.argv[2], postprocess=hold)
'''


class Lines(Progress):
    """A progress that keeps the lines it is asked to log."""

    def __init__(self):
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def beside(out: Path) -> list[str]:
    """Everything edgekit may have left beside ``out`` (staging, moved-aside and probe folders)."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}*"))


def user_folder(path: Path) -> Path:
    (path / "holiday").mkdir(parents=True)
    (path / "notes.txt").write_text("mine")
    (path / "holiday" / "beach.jpg").write_bytes(os.urandom(2048))
    return path


# ---- --force: what may be replaced (library) -------------------------------------------------------

def _artifact_with_a_user_file(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"m")
    (out / "edgekit.json").write_text(json.dumps({"format": "onnx", "files": [{"path": "model.onnx"}]}))
    (out / "my-notes.md").write_text("added by the user")
    return out


def _own_edgekit_json(tmp_path: Path) -> Path:
    out = user_folder(tmp_path / "project")
    (out / "edgekit.json").write_text('{"theme": "dark"}')  # a user's own file of that name, not a manifest
    return out


def _symlink_to_user_folder(tmp_path: Path) -> Path:
    user_folder(tmp_path / "real")
    out = tmp_path / "link"
    out.symlink_to(tmp_path / "real")
    return out


FOREIGN = {
    "user folder": lambda tmp: user_folder(tmp / "photos"),
    "artifact holding a user's file": _artifact_with_a_user_file,
    "folder with a non-manifest edgekit.json": _own_edgekit_json,
    "symlink to a user folder": _symlink_to_user_folder,
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_force_refuses_what_is_not_ours_and_deletes_nothing(tmp_path, case):
    out = FOREIGN[case](tmp_path)
    target = out.resolve()
    before, around = snapshot(target), sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ConfigError, match="force=True replaces only an edgekit artifact or an empty folder") as info:
        with staged_artifact(out, force=True):
            pytest.fail("the work started")
    assert "\n" not in str(info.value) and set(info.value.params) == {"out", "force"}
    assert snapshot(target) == before  # every file intact, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == around  # no staging folder was made


def test_force_refuses_a_file_at_out(tmp_path):
    out = tmp_path / "model.gguf"
    out.write_bytes(b"GGUF mine")
    with pytest.raises(ConfigError, match="is not a folder"):
        check_output_path(out, force=True)
    assert out.read_bytes() == b"GGUF mine"


@pytest.mark.parametrize("exporter", ["onnx", "gguf"])
def test_exporters_refuse_a_user_folder_before_any_work(tmp_path, tiny_llama, exporter):
    if exporter == "onnx":
        from edgekit.exporters.onnx import export_onnx as export
    else:
        from edgekit.exporters.gguf import export_gguf as export
    out = user_folder(tmp_path / "mine")
    before = snapshot(out)
    progress = Lines()
    with pytest.raises(ConfigError, match="replaces only an edgekit artifact"):
        export(tiny_llama, out, force=True, progress=progress)
    assert snapshot(out) == before and beside(out) == [] and progress.lines == []


@pytest.mark.parametrize("litter", [[], [".DS_Store"]])
def test_force_fills_an_empty_folder(tmp_path, litter):
    out = tmp_path / "out"
    out.mkdir()
    for name in litter:
        (out / name).write_bytes(b"\0")
    with staged_artifact(out, force=True) as stage:
        (stage / "model.onnx").write_text("new")
    assert snapshot(out) == {"model.onnx": b"new"} and beside(out) == []


def test_force_replaces_an_artifact_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").mkdir()
    for rel in ("model.onnx", "sub/model.onnx.data", ".DS_Store"):
        (out / rel).write_text("old")
    (out / "edgekit.json").write_text(json.dumps({"files": [{"path": "model.onnx"}, {"path": "sub/model.onnx.data"}]}))
    with staged_artifact(out, force=True) as stage:
        (stage / "model-q8_0.gguf").write_text("new")
    assert snapshot(out) == {"model-q8_0.gguf": b"new"} and beside(out) == []


def test_something_foreign_appearing_during_the_work_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="replaces only an edgekit artifact"):
        with staged_artifact(out, force=True) as stage:
            (stage / "model.onnx").write_text("new")
            user_folder(out)  # the user made a folder there while the export ran
    assert (out / "notes.txt").read_text() == "mine" and beside(out) == []


# ---- --force through the command line ------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["onnx", "gguf"])
def test_cli_force_refuses_a_user_folder(cli, tmp_path, tiny_llama, fmt):
    out = user_folder(tmp_path / "photos")
    before = snapshot(out)
    proc = cli("export", fmt, tiny_llama, "-o", out, "--force")
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert "is not an edgekit artifact" in line
    assert "--force replaces only an edgekit artifact or an empty folder" in line
    assert "-o/--output" in line and "force=True" not in line
    assert snapshot(out) == before and beside(out) == []


def test_cli_force_fills_an_empty_folder_then_replaces_the_artifact(cli, tmp_path, tiny_llama):
    out = tmp_path / "out"
    out.mkdir()
    first = cli("export", "gguf", tiny_llama, "-o", out, "--force", "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads(first.stdout)["manifest"]["precision"] == "f16"
    second = cli("export", "gguf", tiny_llama, "-o", out, "--force", "--quant", "q8_0", "--json")
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout)["manifest"]["precision"] == "q8_0"
    assert sorted(p.name for p in out.iterdir()) == ["edgekit.json", "model-q8_0.gguf"]
    assert beside(out) == []


# ---- other places that replace a user's path -------------------------------------------------------

def test_save_profile_force_replaces_only_a_target_profile(tmp_path):
    from edgekit.targets.profile import load_preset, preset_names, save_profile

    profile = load_preset(preset_names()[0])
    mine = tmp_path / "pyproject.toml"
    mine.write_text('[project]\nname = "mine"\n')
    with pytest.raises(ConfigError, match="not an edgekit target profile: force=True replaces only a target profile"):
        save_profile(profile, mine, force=True)
    assert mine.read_text() == '[project]\nname = "mine"\n'
    board = save_profile(profile, tmp_path / "board.toml")
    assert save_profile(profile, board, force=True) == board  # a profile: replaced
    (tmp_path / "empty.toml").touch()
    save_profile(profile, tmp_path / "empty.toml", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.toml", "empty.toml", "pyproject.toml"]


def test_cli_detect_refuses_to_overwrite_a_non_profile_before_measuring(cli, tmp_path):
    mine = tmp_path / "pyproject.toml"
    mine.write_text('[project]\nname = "mine"\n')
    proc = cli("targets", "detect", "--save", mine, "--force")
    assert proc.returncode == 2, proc.stderr
    assert "--force replaces only a target profile" in error_line(proc)
    assert mine.read_text() == '[project]\nname = "mine"\n'


def test_report_folder_refuses_a_folder_where_a_report_file_goes(tmp_path):
    from edgekit.profiler.report import check_report_dir

    user_folder(tmp_path / "reports")
    (tmp_path / "reports" / "bench.md").mkdir()
    with pytest.raises(ConfigError, match="bench.md is a folder"):
        check_report_dir(tmp_path / "reports")


# ---- stale staging folders ------------------------------------------------------------------------

def _fill(folder: Path, n: int) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "model.onnx").write_bytes(b"x" * n)
    return folder


def test_staging_of_dead_zombie_and_reused_pids_is_removed_and_reported(tmp_path):
    assert HAS_PROC, "process start times come from /proc: this test runs on Linux, where the suite runs"
    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        owner = f"{_host_key()}-{sleeper.pid}-{_proc_stat(sleeper.pid)[1]}"
        staging = _fill(tmp_path / f".out{STAGING_MARK}{owner}-aaaaaaaa", 3000)
        trash = _fill(tmp_path / f".out{TRASH_MARK}{owner}-bbbbbbbb", 2000)
        progress = Lines()
        assert sweep_stale_staging(out, progress) == (0, 0)  # its owner is alive
        assert staging.is_dir() and trash.is_dir() and progress.lines == []
        sleeper.kill()  # not reaped yet: a zombie, which will never touch its folder again
        deadline = time.monotonic() + 60
        while _proc_stat(sleeper.pid)[0] != "Z":
            assert time.monotonic() < deadline, "the killed process never became a zombie"
            time.sleep(0.02)
        # a live PID (this process) recorded with a start time that is not its own: the PID was reused
        not_ours = int(_proc_stat(os.getpid())[1]) + 1
        reused = _fill(tmp_path / f".out{STAGING_MARK}{_host_key()}-{os.getpid()}-{not_ours}-cccccccc", 1000)
        assert sweep_stale_staging(out, progress) == (3, 6000)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not staging.exists() and not trash.exists() and not reused.exists()
    assert progress.lines == ["removed 3 stale staging folders of interrupted exports beside out (6.0 KB)"]
    assert sweep_stale_staging(out, progress) == (0, 0)  # reaped and gone: nothing more to do


def test_live_and_foreign_staging_folders_are_left_alone(cli, tmp_path, tiny_llama):
    out = tmp_path / "out"
    live = _fill(new_staging_folder(out), 1000)  # owned by this test process, which is alive
    assert live.name.startswith(f".out{STAGING_MARK}{_host_key()}-{os.getpid()}-")
    other_host = "00000000" if _host_key() != "00000000" else "11111111"
    foreign = _fill(tmp_path / f".out{STAGING_MARK}{other_host}-{os.getpid() + 1}-0-dddddddd", 500)
    older = _fill(tmp_path / f".out{STAGING_MARK}k2j4h5g6", 500)  # an older edgekit's name: owner unknown
    progress = Lines()
    assert sweep_stale_staging(out, progress) == (0, 0)
    assert progress.lines == ["left 2 staging folders beside out (1.0 KB) made on another machine or container, "
                              "or by an older edgekit: remove them once no export writes there"]
    proc = cli("export", "gguf", tiny_llama, "-o", out)  # another process, sweeping before its own staging
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "removed" not in proc.stderr and "left 2 staging folders beside out" in proc.stderr
    for folder in (live, foreign, older):
        assert (folder / "model.onnx").is_file(), folder.name
    assert (out / "edgekit.json").is_file()


# ---- SIGTERM / SIGHUP handling in this process ----------------------------------------------------

@pytest.fixture
def default_sigterm():
    """SIGTERM at its default action for the test (a runner or plugin may have installed its own)."""
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_terminate_cleanly_installs_and_restores_only_default_handlers(default_sigterm):
    with terminate_cleanly():
        assert callable(signal.getsignal(signal.SIGTERM))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with terminate_cleanly():
            assert signal.getsignal(signal.SIGTERM) is mine  # a handler someone else installed is kept
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    seen = []
    worker = threading.Thread(target=lambda: seen.append(_in_block()))
    worker.start()
    worker.join()
    assert seen == [signal.SIG_DFL]  # outside the main thread nothing is installed (and nothing fails)


def _in_block():
    with terminate_cleanly():
        return signal.getsignal(signal.SIGTERM)


def test_sigterm_in_this_process_removes_the_staging_folder(tmp_path, default_sigterm):
    out = tmp_path / "out"
    with pytest.raises(Terminated) as info:
        with staged_artifact(out, force=False) as stage:
            (stage / "model.onnx").write_bytes(b"x" * 1000)
            assert callable(signal.getsignal(signal.SIGTERM))  # ours: the signal below cannot kill pytest
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.01)
    assert info.value.code == 128 + signal.SIGTERM and info.value.signum == signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# ---- real exports in a subprocess, signalled mid-way ----------------------------------------------

def _default_signals() -> None:  # the child reacts to SIGINT/SIGTERM even if the test runner ignores them
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class MidExport:
    """A real export in a subprocess, held mid-way by its postprocess hook until the test signals it."""

    def __init__(self, tmp_path: Path, args: list[str]):
        (tmp_path / "hold.py").write_text(HOLD)
        self.ready = tmp_path / "ready"
        self.stdout, self.stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "EK_READY": str(self.ready)}
        with open(self.stdout, "w") as so, open(self.stderr, "w") as se:
            self.proc = subprocess.Popen([sys.executable, *args], stdout=so, stderr=se, env=env, cwd=ROOT,
                                         preexec_fn=_default_signals)

    def wait_until_mid_way(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"the export ended (rc {self.proc.returncode}) before its hook:\n{self.stderr.read_text()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"the export did not reach its hook in {timeout:.0f} s:\n{self.stderr.read_text()}")
            time.sleep(0.05)

    def signal(self, sig: int) -> tuple[int, str]:
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the export did not end after signal {sig}")
        return rc, self.stderr.read_text()


def _start_cli_onnx(tmp_path: Path, tiny_llama: Path, out: Path) -> MidExport:
    hook = f"{tmp_path / 'hold.py'}:hold"
    return MidExport(tmp_path, ["-m", "edgekit", "export", "onnx", str(tiny_llama), "-o", str(out),
                                "--postprocess", hook])


def _edgekit_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("edgekit:")]


def test_sigterm_mid_export_cli_cleans_up_and_exits_143(tmp_path, tiny_llama):
    out = tmp_path / "out"
    run = _start_cli_onnx(tmp_path, tiny_llama, out)
    run.wait_until_mid_way()
    assert len(beside(out)) == 1  # the staging folder, holding the traced model
    rc, stderr = run.signal(signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, stderr
    assert _edgekit_lines(stderr) == ["edgekit: terminated"] and "Traceback" not in stderr
    assert not out.exists() and beside(out) == []


def test_sigterm_mid_export_library_cleans_up(tmp_path, tiny_llama):
    """export_gguf called from a user's script: SIGTERM still removes the staging folder."""
    out = tmp_path / "out"
    run = MidExport(tmp_path, ["-c", GGUF_API, str(tiny_llama), str(out), str(tmp_path)])
    run.wait_until_mid_way()
    assert len(beside(out)) == 1
    rc, stderr = run.signal(signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, stderr
    assert not out.exists() and beside(out) == []


def test_ctrl_c_mid_export_exits_130_with_one_line(tmp_path, tiny_llama):
    out = tmp_path / "out"
    run = _start_cli_onnx(tmp_path, tiny_llama, out)
    run.wait_until_mid_way()
    rc, stderr = run.signal(signal.SIGINT)
    assert rc == 130, stderr
    assert _edgekit_lines(stderr) == ["edgekit: interrupted"] and "Traceback" not in stderr
    assert stderr.rstrip().splitlines()[-1] == "edgekit: interrupted"
    assert not out.exists() and beside(out) == []


def test_sigkill_leaves_staging_that_the_next_export_removes_and_reports(cli, tmp_path, tiny_llama):
    out = tmp_path / "out"
    run = _start_cli_onnx(tmp_path, tiny_llama, out)
    run.wait_until_mid_way()
    rc, _ = run.signal(signal.SIGKILL)
    assert rc == -signal.SIGKILL
    (stale,) = out.parent.glob(f".{out.name}{STAGING_MARK}*")  # SIGKILL cannot be handled: it stays
    assert any(p.is_file() for p in stale.rglob("*"))
    proc = cli("export", "gguf", tiny_llama, "-o", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "removed 1 stale staging folder of interrupted exports beside out (" in proc.stderr
    assert not stale.exists() and beside(out) == [] and (out / "edgekit.json").is_file()
