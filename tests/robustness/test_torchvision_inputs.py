"""``kzoo convert torchvision`` on files that are no checkpoint (random bytes, a truncated zip, a zip bomb, a
pickle that would run code): one line naming the file and the problem, exit 2, nothing written, no torch needed."""

import os
import pickle
import zipfile

import pytest

from kzoo.cli import main


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _make(kind, path):
    if kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
            z.writestr("archive/data/0", b"\0" * 4096)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "zip bomb":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            # a tensor of 2**31 - 2**24 float32s (8.5 GB) over a storage of 8 MB of zeros, deflated to a few KB
            numel = b"J\x00\x00\x00\x7f"
            pid = b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
            pid += numel + b"tQ"
            tensor = b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"J\x00\x00\x00\x00(" + numel + b"t("
            tensor += b"J\x01\x00\x00\x00t\x89)tR"
            z.writestr("archive/data.pkl", b"\x80\x02}(X\x01\x00\x00\x00w" + tensor + b"u.")
            z.writestr("archive/data/0", b"\0" * (8 << 20))
    elif kind == "code":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps({"w": _RunsCode()}, protocol=2))


@pytest.mark.parametrize("kind", ["random", "empty", "truncated zip", "zip bomb", "code"])
def test_convert_torchvision_bad_file_is_one_line(tmp_path, capsys, kind):
    pth = tmp_path / "model.pth"
    _make(kind, pth)
    output = tmp_path / "out.weights.h5"
    assert main(["convert", "torchvision", str(pth), str(output)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and str(pth) in captured.err, captured.err
    assert "Traceback" not in captured.err and "pwned" not in captured.out
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]
