"""The file-system layer means the same on a local disk and in an object store (the emulated
Cloud Storage bucket): folders exist while they hold something, and go with everything in them."""

from __future__ import annotations

import pytest

from alignpipe import fs


@pytest.fixture(params=["local", "gcs"])
def base(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "base")
    return request.getfixturevalue("gcs_bucket") + "/base"


def test_folders_exist_while_they_hold_files_and_delete_tree_takes_everything_in_them(base):
    fs.write_text(fs.join(base, "a/x.txt"), "1")
    fs.write_text(fs.join(base, "a/b/y.txt"), "2")
    fs.write_text(fs.join(base, "ab.txt"), "3")
    assert fs.exists(fs.join(base, "a")) and fs.exists(fs.join(base, "a/b"))
    assert not fs.exists(fs.join(base, "a/c")) and not fs.exists(fs.join(base, "a/x"))

    fs.delete_tree(fs.join(base, "a"))
    assert not fs.exists(fs.join(base, "a"))
    assert fs.glob(fs.join(base, "*")) == [fs.join(base, "ab.txt")]  # a name that starts the same stays
    fs.delete_tree(fs.join(base, "a"))  # nothing there: nothing to do
    fs.delete_tree(fs.join(base, "ab.txt"))  # a file
    assert fs.glob(fs.join(base, "*")) == []
