"""The official MANO pickle format, read without chumpy, and hostile or broken files."""

import copyreg
import io
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from flows.cli import main
from pipeline.errors import InputError
from pipeline.hand import load_hand_model
from pipeline.hand.mano_file import load_model_arrays


def _fake_module(monkeypatch, name, **classes):
    module = types.ModuleType(name)
    for class_name, cls in classes.items():
        cls.__module__, cls.__qualname__, cls.__name__ = name, class_name, class_name
        setattr(module, class_name, cls)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def write_official_style_pickle(path, arrays, monkeypatch):
    """A protocol-2 pickle shaped like MANO_RIGHT.pkl: chumpy objects, an old-path sparse matrix."""

    class Ch:  # chumpy.ch.Ch keeps its value in 'x' next to bookkeeping state
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()

    class csc_matrix:  # scipy.sparse.csc.csc_matrix of scipy 0.x, as Python 2 pickled it
        def __init__(self, dense):
            from scipy import sparse

            m = sparse.csc_matrix(dense)
            self._shape, self.data, self.indices, self.indptr = m.shape, m.data, m.indices, m.indptr
            self.maxprint = 50

    def _reconstruct(subtype, shape, dtype):  # numpy.core.multiarray._reconstruct of numpy 1.x
        return np.ndarray.__new__(subtype, shape, dtype)

    class OldPathPickler(pickle.Pickler):
        """Writes arrays and chumpy objects the way Python 2 / numpy 1 pickles name them."""

        def reducer_override(self, obj):
            if type(obj) is np.ndarray:
                return _reconstruct, (np.ndarray, (0,), b"b"), obj.__reduce__()[2]
            if isinstance(obj, Ch):
                return copyreg._reconstructor, (Ch, object, None), obj.__dict__
            return NotImplemented

    with monkeypatch.context() as patch:
        _fake_module(patch, "chumpy")
        _fake_module(patch, "chumpy.ch", Ch=Ch)
        _fake_module(patch, "scipy.sparse.csc", csc_matrix=csc_matrix)
        _fake_module(patch, "numpy.core.multiarray", _reconstruct=_reconstruct)
        content = dict(arrays)
        content["v_template"] = Ch(arrays["v_template"])
        content["shapedirs"] = Ch(arrays["shapedirs"])
        content["J_regressor"] = csc_matrix(arrays["J_regressor"])
        content["bs_style"], content["bs_type"] = "lbs", "lrotmin"
        buffer = io.BytesIO()
        OldPathPickler(buffer, protocol=2, fix_imports=True).dump(content)
        path.write_bytes(buffer.getvalue())
    assert "chumpy" not in sys.modules


@pytest.fixture()
def official_pickle(tmp_path, builtin_arrays, monkeypatch):
    path = tmp_path / "MANO_RIGHT.pkl"
    write_official_style_pickle(path, builtin_arrays, monkeypatch)
    return path


def test_official_pickle_loads_without_chumpy(official_pickle, builtin_arrays):
    raw = official_pickle.read_bytes()
    for old_name in (b"chumpy.ch", b"scipy.sparse.csc", b"copy_reg", b"numpy.core.multiarray"):
        assert old_name in raw
    arrays = load_model_arrays(official_pickle)
    assert "chumpy" not in sys.modules
    for key in ("v_template", "shapedirs", "J_regressor", "weights", "f", "hands_components"):
        np.testing.assert_allclose(arrays[key], builtin_arrays[key], err_msg=key)


def test_convert_mano_npz_gives_identical_results(official_pickle, tmp_path, hand_model):
    out_dir = tmp_path / "converted"
    assert main(["hand", "convert-mano", str(official_pickle), "--out", str(out_dir)]) == 0
    npz_path = out_dir / "MANO_RIGHT.npz"
    with np.load(npz_path, allow_pickle=False) as npz:
        assert "J_regressor" in npz.files
    pose = torch.cat([torch.zeros(2, 3, dtype=torch.float64), hand_model.anatomy.sample(2, 0)], dim=1)
    betas = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(2, 10)
    from_pickle = load_hand_model(official_pickle, dtype=torch.float64)(pose, betas)
    from_npz = load_hand_model(out_dir, dtype=torch.float64)(pose, betas)
    for a, b in zip(from_pickle, from_npz):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(from_pickle[0], hand_model(pose, betas)[0], atol=1e-12, rtol=0)


class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(
    "make, refused",
    [
        (lambda marker: _Evil(os.system, (f"touch {marker}",)), "system"),
        (lambda marker: _Evil(__import__("subprocess").call, (["touch", str(marker)],)), "call"),
        (lambda marker: _Evil(eval, (f"open({str(marker)!r}, 'w')",)), "eval"),
    ],
)
def test_hostile_pickle_is_refused_and_nothing_runs(tmp_path, make, refused):
    marker = tmp_path / "pwned"
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": make(marker)}, protocol=2))
    with pytest.raises(InputError, match=f"refused class '[a-z_.]*\\.{refused}'"):
        load_model_arrays(path)
    assert not marker.exists()


def test_refused_pickle_through_cli_exits_2(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps(_Evil(os.system, (f"touch {marker}",)), protocol=2))
    out_dir = tmp_path / "out"
    assert main(["hand", "convert-mano", str(path), "--out", str(out_dir)]) == 2
    assert "refused class" in capsys.readouterr().err
    assert not marker.exists() and not out_dir.exists()


def test_missing_key_and_wrong_shape_are_named(tmp_path, builtin_arrays):
    broken = dict(builtin_arrays)
    del broken["weights"]
    path = tmp_path / "missing.pkl"
    path.write_bytes(pickle.dumps(broken, protocol=2))
    with pytest.raises(InputError, match=r"missing\.pkl: missing key 'weights'"):
        load_model_arrays(path)
    broken = dict(builtin_arrays, posedirs=np.zeros((10, 3, 135)))
    path = tmp_path / "shape.npz"
    np.savez(path, **broken)
    with pytest.raises(InputError, match=r"shape\.npz: 'posedirs' has 10 vertices"):
        load_model_arrays(path)
    np.savez(path, **dict(builtin_arrays, kintree_table=np.zeros((3, 16))))
    with pytest.raises(InputError, match=r"'kintree_table' has shape \(3, 16\), expected \(2, 16\)"):
        load_model_arrays(path)


def test_corrupt_and_missing_files(tmp_path, official_pickle, capsys):
    truncated = tmp_path / "MANO_RIGHT_truncated.pkl"
    truncated.write_bytes(official_pickle.read_bytes()[:5000])
    with pytest.raises(InputError, match="truncated.pkl: .*truncated"):
        load_model_arrays(truncated)
    assert main(["hand", "convert-mano", str(tmp_path / "nope.pkl"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.pkl: MANO model file not found" in capsys.readouterr().err
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    with pytest.raises(InputError, match="no MANO_RIGHT.npz or MANO_RIGHT.pkl"):
        load_hand_model(empty_folder)
    (tmp_path / "MANO_LEFT.pkl").write_bytes(b"")
    with pytest.raises(InputError, match="says left hand"):
        load_hand_model(tmp_path / "MANO_LEFT.pkl", side="right")
