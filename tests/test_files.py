"""voiceflex.files: atomic memo writes and the sweep of temp files that dead writers left."""

import subprocess
import sys

from voiceflex import files


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_memo_write_sweeps_what_a_dead_writer_left_and_leaves_no_temp_file(tmp_path):
    dead = tmp_path / f".{_dead_pid()}-abc.tmp"
    dead.write_bytes(b"torn")
    memo = tmp_path / "memo.json"
    files.write_text_atomically(memo, '["1.52", []]')
    assert memo.read_text() == '["1.52", []]'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memo.json"]


def test_temp_names_carry_the_pid_so_the_sweep_finds_them(tmp_path):
    folder = files.temp_dir(tmp_path)
    with files.temp_file(tmp_path) as f:
        name = f.name
    for made in (folder.name, name.rsplit("/", 1)[-1]):
        match = files.TEMP_FILE.match(made)
        assert match and files.pid_alive(int(match.group(1)))
    files.sweep(tmp_path, files.TEMP_FILE)  # ours: alive, kept
    assert folder.is_dir()


def test_an_unwritable_memo_is_given_up_quietly(tmp_path):
    (tmp_path / "file").write_text("x")
    files.write_text_atomically(tmp_path / "file" / "memo.json", "{}")  # its folder is a file
    assert (tmp_path / "file").read_text() == "x"
