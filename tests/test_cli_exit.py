"""The `dbos` console script (``dbos_cli.app.run``) ends the process without the interpreter's
teardown, and loses nothing a normal exit would do: buffered output reaches a file, exit codes
stay, atexit handlers run, and a non-daemon thread still running is waited for."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from tests.rows import insert_workflows

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, tmp_path: Path) -> tuple[int, str, str]:
    out = tmp_path / "out.txt"
    # Buffered as in a terminal user's shell (this machine's environment sets PYTHONUNBUFFERED).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with out.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-c", code],
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
    return done.returncode, out.read_text(), done.stderr


def test_output_to_a_file_is_complete_and_exit_codes_stay(db_url: str, tmp_path: Path) -> None:
    insert_workflows(db_url, 2000, "x-")
    listing = f"from dbos_cli import app; app.sys.argv = ['dbos', 'workflow', 'list', '-l', '2000', '--json', '-D', {db_url!r}]; app.run()"  # noqa: E501
    code, out, err = _run(listing, tmp_path)
    assert code == 0, err
    assert len(json.loads(out)) == 2000  # every buffered byte reached the file
    missing = f"from dbos_cli import app; app.sys.argv = ['dbos', 'workflow', 'get', 'nope', '-D', {db_url!r}]; app.run()"  # noqa: E501
    code, out, err = _run(missing, tmp_path)
    assert code == 1 and "does not exist" in err and out == ""
    # Text still in stdout's buffer (a file is block-buffered) when the command ends.
    buffered = (
        "from dbos_cli import app; print('before'); app.sys.argv = ['dbos', '--version']; app.run()"
    )
    code, out, err = _run(buffered, tmp_path)
    assert code == 0 and out.startswith("before\ndbos "), (out, err)
    typo = "from dbos_cli import app; app.sys.argv = ['dbos', 'wrkflow']; app.run()"
    code, out, err = _run(typo, tmp_path)
    assert code == 2 and "No such command" in err


def test_atexit_handlers_run_and_a_running_thread_is_waited_for(tmp_path: Path) -> None:
    probe = (
        "import atexit, threading, time\n"
        "from dbos_cli import app\n"
        "atexit.register(lambda: print('atexit ran', flush=True))\n"
        "threading.Thread(target=lambda: (time.sleep(0.5), print('thread done'))).start()\n"
        "app.sys.argv = ['dbos', '--version']\n"
        "app.run()\n"
    )
    code, out, err = _run(probe, tmp_path)
    assert code == 0, err
    assert out.splitlines()[0].startswith("dbos ")
    assert "thread done" in out and "atexit ran" in out
    assert out.index("thread done") < out.index("atexit ran")  # as a normal exit orders them


def test_a_closed_stdout_or_stderr_exits_as_the_normal_exit_does(tmp_path: Path) -> None:
    """A descriptor closed when the process starts (cron, some supervisors) makes sys.stdout or
    sys.stderr None: `run` has nothing to flush, and exits with the code Python's normal exit
    after ``main`` gives."""
    for redirect in (">&-", "2>&-", ">&- 2>&-"):
        for args in (["--help"], ["wrkflow"], ["--version"]):
            codes = []
            for ending in ("app.run()", "sys.exit(app.main())"):
                probe = f"import sys; from dbos_cli import app; sys.argv = ['dbos', *{args!r}]; "
                probe += ending
                shell = f"{sys.executable} -c {shlex.quote(probe)} {redirect}"
                done = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, cwd=ROOT)
                codes.append(done.returncode)
            assert codes[0] == codes[1], (redirect, args, codes)


def test_an_app_loaded_into_the_process_gets_the_normal_teardown(tmp_path: Path) -> None:
    """An app may rely on the interpreter's teardown (here a module-level file it writes and
    never closes): once application code is loaded (from outside Python's and this tool's
    folders, or by `dbos start` / `check-replay` from anywhere), `run` ends the normal way."""
    (tmp_path / "leaky.py").write_text(
        "log = open(__file__ + '.log', 'w')\nlog.write('written at import')\n"
    )
    probe = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import leaky\n"
        "from dbos_cli import app\n"
        "app.sys.argv = ['dbos', '--version']\n"
        "app.run()\n"
    )
    code, _, err = _run(probe, tmp_path)
    assert code == 0, err
    assert (tmp_path / "leaky.py.log").read_text() == "written at import"
    flag = (
        "from dbos_cli import app\n"
        "from dbos_cli.commands import start\n"
        "print(app._only_this_tool_loaded())\n"
        "start.import_app('json')  # an app, though one of Python's own modules\n"
        "print(app._only_this_tool_loaded())\n"
    )
    code, out, err = _run(flag, tmp_path)
    assert (code, out.split()) == (0, ["True", "False"]), err


def test_the_dbos_script_ends_a_listing_without_the_teardown(db_url: str, tmp_path: Path) -> None:
    """The installed `dbos` script (its ``__main__`` in the environment's scripts folder), after
    a listing, takes the fast exit: what `make bench` times as `dbos workflow list`."""
    script = Path(sys.executable).parent / "dbos"
    probe = (
        "import os, runpy, sys\n"
        "real = os._exit\n"
        "os._exit = lambda code: (print('fast exit', code, flush=True), real(code))\n"
        f"sys.argv = [{str(script)!r}, 'workflow', 'list', '-D', {db_url!r}]\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    code, out, err = _run(probe, tmp_path)
    assert code == 0, err
    assert out.rstrip().endswith("fast exit 0"), out
