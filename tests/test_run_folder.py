"""Run folders: one owner at a time (an OS lock that dies with its process), refusals that
leave nothing behind, and I/O failures as one-line errors naming the path."""

import subprocess
import sys
import textwrap

import pytest

from es_toolkit.run_folder import LOCK_NAME, RunFolder, RunFolderError

HOLD = textwrap.dedent(
    """
    import sys, time
    from es_toolkit.run_folder import RunFolder
    with RunFolder(sys.argv[1]).claim():
        print("claimed", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def held_folder(tmp_path):
    """A folder claimed by another process, killed (SIGKILL) at the end of the test."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "claimed"
    yield out, holder
    holder.kill()
    holder.wait(timeout=30)
    holder.stdout.close()


def test_a_claimed_folder_refuses_a_second_owner_until_its_process_dies(held_folder):
    out, holder = held_folder
    with (
        pytest.raises(RunFolderError, match=rf"in use by another run \(process {holder.pid}\)"),
        RunFolder(out).claim(),
    ):
        pass
    holder.kill()  # SIGKILL: no clean-up runs, and the OS drops the lock
    holder.wait(timeout=30)
    with RunFolder(out).claim() as folder:
        folder.append_log([{"generation": 0}])
    assert folder.read_log() == [{"generation": 0}]


def test_a_refused_claim_leaves_no_folder_behind(tmp_path):
    with (
        pytest.raises(RunFolderError, match="holds no run to resume"),
        RunFolder(tmp_path / "new").claim(resume=True),
    ):
        pass
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="boom"), RunFolder(tmp_path / "failed").claim():
        raise ValueError("boom")
    assert not (tmp_path / "failed").exists()


def test_a_folder_holding_a_run_is_kept_unless_overwritten(tmp_path):
    with RunFolder(tmp_path).claim() as folder:
        folder.append_log([{"generation": 0}])
    with pytest.raises(FileExistsError, match="already holds a run"), RunFolder(tmp_path).claim():
        pass
    assert folder.read_log() == [{"generation": 0}]
    with RunFolder(tmp_path).claim(overwrite=True) as folder:
        assert folder.read_log() == []
    assert (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize(
    ("where", "reason"), [("/proc/es_toolkit_run", "No such file"), ("file/run", "Not a directory")]
)
def test_unwritable_folders_are_one_error_naming_the_path(tmp_path, where, reason):
    (tmp_path / "file").write_text("")
    path = where if where.startswith("/") else tmp_path / where
    with (
        pytest.raises(RunFolderError, match=f"cannot write {path}: {reason}"),
        RunFolder(path).claim(),
    ):
        pass


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with (
        pytest.raises(RunFolderError, match="is not a folder"),
        RunFolder(tmp_path / "file").claim(),
    ):
        pass
