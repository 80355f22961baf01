"""kzoo.applications.torchvision.checkpoint: .pth files read without torch, against the files torch writes and
the values torch reads back; refused globals, truncated files and zip bombs are errors naming the file."""

import importlib.util
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from kzoo.applications import torchvision as tv
from kzoo.applications.torchvision import checkpoint

# every dtype torchvision's checkpoints use (and the other storage types), views that share a storage, a
# Parameter, a 0-d and an empty tensor, and the `_metadata` attribute state dicts carry
TORCH_SAVE_EVERY_DTYPE = r"""
from collections import OrderedDict

torch.manual_seed(0)
state = OrderedDict()
for name in ("float64", "float32", "float16", "bfloat16"):
    state[name] = torch.randn(3, 5, dtype=getattr(torch, name))
for name in ("int64", "int32", "int16", "int8", "uint8"):
    state[name] = torch.randint(-100 if name != "uint8" else 0, 100, (4, 2), dtype=getattr(torch, name))
state["bool"] = torch.rand(6) > 0.5
state["num_batches_tracked"] = torch.tensor(7)
state["empty"] = torch.zeros(0, 3)
base = torch.arange(24.0).reshape(2, 3, 4)
state["transposed"] = base.permute(2, 0, 1)
state["offset_view"] = base[1, 1:]
state["base"] = base
state["parameter"] = torch.nn.Parameter(torch.randn(2, 2))
state["conv"] = torch.randn(8, 3, 3, 3)
state._metadata = OrderedDict([("", {"version": 1})])
torch.save(state, str(inputs["zip"]))
torch.save(state, str(inputs["legacy"]), _use_new_zipfile_serialization=False)
torch.save({"model": state, "epoch": 3, "args": {"lr": 0.1}}, str(inputs["training"]))
torch.save({"epoch": 3}, str(inputs["empty_file"]))
# what today's converter did: torch.load, floating tensors as float32
for key, value in state.items():
    outputs[key] = value.detach().float().numpy() if value.is_floating_point() else value.detach().numpy()
"""


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    """The files of TORCH_SAVE_EVERY_DTYPE and torch's own values (skips without torch)."""
    if not all(importlib.util.find_spec(name) for name in ("torch", "torchvision")):
        pytest.skip("torch is not installed")
    folder = tmp_path_factory.mktemp("pth")
    paths = {name: folder / f"{name}.pth" for name in ("zip", "legacy", "training", "empty_file")}
    np.savez(folder / "in.npz", **{name: np.array(str(path)) for name, path in paths.items()})
    script = (
        "import sys\nimport numpy as np\nimport torch\ninputs = dict(np.load(sys.argv[1]))\noutputs = {}\n"
        + TORCH_SAVE_EVERY_DTYPE
        + "\nnp.savez(sys.argv[2], **outputs)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder / "in.npz"), str(folder / "out.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return paths, dict(np.load(folder / "out.npz"))


@pytest.mark.parametrize("layout", ["zip", "legacy", "training"])
def test_reads_what_torch_wrote_bit_for_bit(torch_files, layout):
    paths, expected = torch_files
    state = tv.read_torchvision_checkpoint(paths[layout])
    assert list(state) == list(expected)  # the file's order
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    assert state["float16"].dtype == state["bfloat16"].dtype == np.float32
    assert (
        state["int8"].dtype == np.int8 and state["bool"].dtype == np.bool_ and state["num_batches_tracked"].shape == ()
    )


def test_empty_and_missing_files(torch_files, tmp_path):
    paths, _ = torch_files
    with pytest.raises(checkpoint.CheckpointError, match=r"cannot read .*empty_file\.pth.*holds no tensors"):
        tv.read_torchvision_checkpoint(paths["empty_file"])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        tv.read_torchvision_checkpoint(tmp_path / "none.pth")


def test_needs_no_torch(torch_files):
    """Read in a Python where importing torch fails."""
    paths, expected = torch_files
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from kzoo.applications.torchvision.checkpoint import read_torchvision_checkpoint\n"
        f"state = read_torchvision_checkpoint({str(paths['legacy'])!r})\n"
        "print(len(state), float(state['float32'].sum()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    count, total = done.stdout.split()
    assert int(count) == len(expected) and float(total) == pytest.approx(float(expected["float32"].sum()), rel=1e-6)


class _RunsCode:
    """Unpickling this would call os.system (it must never be called)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip_pth(path, pickled: bytes, storages: dict[str, bytes] | None = None, compress=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)


def _legacy_pth(path, pickled: bytes, tail: bytes = b"") -> None:
    header = b"".join(
        pickle.dumps(v, protocol=2)
        for v in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {}})
    )
    path.write_bytes(header + pickled + tail)


def test_malicious_pickles_are_refused_and_run_nothing(tmp_path):
    marker = tmp_path / "code_ran"
    payload = pickle.dumps({"weight": _RunsCode(marker)}, protocol=2)
    _zip_pth(tmp_path / "evil_zip.pth", payload)
    _legacy_pth(tmp_path / "evil_legacy.pth", payload)
    for name in ("evil_zip.pth", "evil_legacy.pth"):
        with pytest.raises(checkpoint.CheckpointError, match=rf"{name}.*global posix.system.*refused"):
            tv.read_torchvision_checkpoint(tmp_path / name)
    assert not marker.exists()
    # a class the pickle module could build (not a state dict's) is refused the same way
    _zip_pth(tmp_path / "class.pth", pickle.dumps({"w": io.BytesIO}, protocol=2))
    with pytest.raises(checkpoint.CheckpointError, match=r"class\.pth.*global _io.BytesIO"):
        tv.read_torchvision_checkpoint(tmp_path / "class.pth")


def _tensor_pickle(numel: int, size: tuple, stride: tuple, offset: int = 0, kind: str = "FloatStorage") -> bytes:
    """A state-dict pickle of one tensor, written opcode by opcode as torch does (``torch`` is not imported)."""

    def glob(module, name):
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def ints(values):
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"

    pid = b"(" + b"X\x07\x00\x00\x00storage" + glob("torch", kind) + b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
    pid += b"J" + struct.pack("<i", numel) + b"tQ"
    tensor = glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"J" + struct.pack("<i", offset)
    tensor += ints(size) + ints(stride) + b"\x89" + glob("collections", "OrderedDict") + b")Rt" + b"R"
    return b"\x80\x02" + glob("collections", "OrderedDict") + b")R(X\x01\x00\x00\x00w" + tensor + b"u."


def test_hand_written_tensor_pickle_reads(tmp_path):
    _zip_pth(tmp_path / "ok.pth", _tensor_pickle(6, (2, 3), (3, 1)), {"0": np.arange(6, dtype="<f4").tobytes()})
    np.testing.assert_array_equal(tv.read_torchvision_checkpoint(tmp_path / "ok.pth")["w"], np.arange(6).reshape(2, 3))


@pytest.mark.parametrize(
    "case, pickled, storages, message",
    [
        ("short_storage", _tensor_pickle(6, (2, 3), (3, 1)), {"0": b"\0" * 20}, "holds 20 bytes, its tensors need 24"),
        ("missing_storage", _tensor_pickle(6, (2, 3), (3, 1)), {}, "storage data/0 is missing"),
        ("view_past_end", _tensor_pickle(6, (3, 3), (3, 1)), {"0": b"\0" * 24}, "reads past its storage"),
        ("negative_offset", _tensor_pickle(6, (2,), (1,), offset=-1), {"0": b"\0" * 24}, "invalid view"),
        ("huge_numel", _tensor_pickle(2**31 - 1, (2,), (1,)), {"0": b"\0" * 8}, "holds 8 bytes"),
        ("unknown_storage", _tensor_pickle(6, (2,), (1,), kind="QInt8Storage"), {}, "global torch.QInt8Storage"),
    ],
)
def test_inconsistent_files_are_named(tmp_path, case, pickled, storages, message):
    path = tmp_path / f"{case}.pth"
    _zip_pth(path, pickled, storages)
    with pytest.raises(checkpoint.CheckpointError, match=rf"cannot read .*{case}\.pth.*{message}"):
        tv.read_torchvision_checkpoint(path)


def test_zip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_STORAGE_BYTES", 1 << 20)
    path = tmp_path / "bomb.pth"  # 64 MB of zeros in a few KB, declared as one 16M-element tensor
    _zip_pth(path, _tensor_pickle(1 << 24, (1 << 24,), (1,)), {"0": b"\0" * (64 << 20)}, compress=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(checkpoint.CheckpointError, match=r"bomb\.pth.*declares 16777216 elements"):
        tv.read_torchvision_checkpoint(path)


def test_random_and_truncated_files_are_named(torch_files, tmp_path):
    paths, _ = torch_files
    rng = np.random.default_rng(0)
    (tmp_path / "random.pth").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (tmp_path / "text.pth").write_text("not a checkpoint")
    (tmp_path / "empty.pth").write_bytes(b"")
    for layout in ("zip", "legacy"):
        data = paths[layout].read_bytes()
        for cut in (len(data) // 3, len(data) - 9):
            (tmp_path / f"cut_{layout}_{cut}.pth").write_bytes(data[:cut])
    for path in sorted(tmp_path.iterdir()):
        with pytest.raises(checkpoint.CheckpointError, match=rf"cannot read {path}"):
            tv.read_torchvision_checkpoint(path)


REAL_KEY_SET = r"""
import re
from collections import OrderedDict

torch.manual_seed(2)
model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
state = OrderedDict((k, torch.randn_like(v) if v.is_floating_point() else v) for k, v in model.state_dict().items())
torch.save(state, str(inputs["zip"]))
# the published 2019 file's layout: legacy format, v1 key names
old = OrderedDict()
for key, value in state.items():
    key = re.sub(r"^(backbone\.fpn\.\w+_blocks\.\d+)\.0\.", r"\1.", key).replace("rpn.head.conv.0.0.", "rpn.head.conv.")
    key = re.sub(r"^roi_heads\.mask_head\.(\d+)\.0\.", lambda m: f"roi_heads.mask_head.mask_fcn{int(m[1]) + 1}.", key)
    old[key] = value
torch.save(old, str(inputs["legacy"]), _use_new_zipfile_serialization=False)
# today's converter's reader, in this process: torch.load(weights_only=True), floating tensors as float32
for name in ("zip", "legacy"):
    loaded = torch.load(str(inputs[name]), map_location="cpu", weights_only=True)
    for key, value in loaded.items():
        outputs[f"{name}/{key}"] = value.float().numpy() if value.is_floating_point() else value.numpy()
"""


@pytest.mark.slow
def test_real_coco_key_set_matches_torch_load_bit_for_bit(torch_run, tmp_path):
    """torchvision's maskrcnn_resnet50_fpn key set with random values, in both layouts, read without torch: the
    arrays torch.load gives, bit for bit; both files convert (the v1 names of the published file included)."""
    paths = {name: tmp_path / f"{name}.pth" for name in ("zip", "legacy")}
    expected = torch_run(REAL_KEY_SET, **{name: np.array(str(path)) for name, path in paths.items()})
    for name, path in paths.items():
        state = tv.read_torchvision_checkpoint(path)
        theirs = {k.split("/", 1)[1]: v for k, v in expected.items() if k.startswith(f"{name}/")}
        assert list(state) == list(theirs) and len(state) > 300
        for key, value in theirs.items():
            assert state[key].dtype == value.dtype and state[key].tobytes() == value.tobytes(), key
