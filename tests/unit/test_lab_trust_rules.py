"""Which lab directories ``upgrader lab up`` may use (upgrader_lab.trust), on real
directories with real owners and modes (root runs the tests: ``nobody`` owns the
attacker's directories)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from upgrader_lab import trust

NOBODY = 65534


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests chown directories to nobody: run them as root")


def test_a_new_directory_is_made_0755_with_the_marker_whatever_the_umask(tmp_path: Path) -> None:
    lab = tmp_path / "a" / "lab"
    assert trust.check_dir(lab) is None
    old = os.umask(0o002)
    try:
        trust.create(lab)
    finally:
        os.umask(old)
    for d in (tmp_path / "a", lab):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o755
    assert (lab / trust.MARKER).is_file()
    assert trust.check_dir(lab) is None  # the lab's own directory, used again
    with pytest.raises(FileExistsError):
        trust.create(lab)


def test_a_directory_another_user_made_is_refused(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir(mode=0o755)
    (lab / trust.MARKER).write_text("forged\n")
    os.chown(lab, NOBODY, NOBODY)
    problem = trust.check_dir(lab)
    assert problem is not None and problem.startswith(f"{lab}: owned by nobody, not by root")
    assert "give a --dir that does not exist yet" in problem
    # and a directory inside it, not yet there: its parent is nobody's
    problem = trust.check_dir(lab / "sub")
    assert problem is not None and f"its parent {lab} is owned by nobody" in problem


def test_a_directory_not_made_by_lab_up_is_refused_even_when_ours(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir(mode=0o700)
    assert trust.check_dir(lab) == (
        f"{lab}: not a directory `upgrader lab up` created; {trust.FIX}"
    )
    (lab / "spec.json").write_text("{}\n")  # a lab built before the marker existed
    assert trust.check_dir(lab) is None


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777])
def test_a_lab_directory_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    lab = tmp_path / "lab"
    trust.create(lab)
    os.chmod(lab, mode)
    problem = trust.check_dir(lab)
    assert problem is not None and "writable by group or others" in problem


def test_an_ancestor_others_may_write_needs_the_sticky_bit(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    problem = trust.check_dir(shared / "lab")
    assert problem is not None
    assert f"its parent {shared} is writable by group or others without the sticky bit" in (problem)
    os.chmod(shared, 0o1777)  # like /tmp: others cannot rename or remove our entries
    assert trust.check_dir(shared / "lab") is None


def test_a_symlink_on_the_path_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    assert trust.check_dir(link / "lab") is None  # root's own symlink
    os.lchown(link, NOBODY, NOBODY)
    problem = trust.check_dir(link / "lab")
    assert problem is not None and f"{link} is a symlink owned by nobody" in problem


def test_written_files_others_could_change_are_named(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    trust.create(lab)
    conf = lab / "sshd" / "sshd_config"
    conf.parent.mkdir(mode=0o755)
    conf.write_text("x\n")
    os.chmod(conf, 0o644)
    assert trust.check_written(lab, [conf]) is None
    os.chmod(conf.parent, 0o777)
    problem = trust.check_written(lab, [conf])
    assert problem is not None and problem.startswith(f"{conf.parent}: owned by root, mode 0777")
    os.chmod(conf.parent, 0o755)
    os.chown(conf, NOBODY, NOBODY)
    problem = trust.check_written(lab, [conf])
    assert problem is not None and problem.startswith(f"{conf}: owned by nobody")
    conf.unlink()
    conf.symlink_to("/etc/hostname")
    problem = trust.check_written(lab, [conf])
    assert problem is not None and "a symlink" in problem
