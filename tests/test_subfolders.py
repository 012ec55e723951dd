"""data/subfolders.py sorts a flat validation folder into class folders from either ground truth."""
import importlib.util

import numpy as np
from scipy.io import savemat

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("subfolders", ROOT / "data" / "subfolders.py")
subfolders = importlib.util.module_from_spec(spec)
spec.loader.exec_module(subfolders)


def flat_folder(tmp_path, n):
    val = tmp_path / "val"
    val.mkdir()
    for i in range(1, n + 1):
        (val / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"jpeg %d" % i)
    return val


def test_devkit_ground_truth(tmp_path):
    val = flat_folder(tmp_path, 4)
    synsets = np.zeros(3, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    synsets["ILSVRC2012_ID"] = [1, 2, 3]
    synsets["WNID"] = ["n01440764", "n01443537", "n01484850"]
    savemat(tmp_path / "meta.mat", {"synsets": synsets})
    (tmp_path / "gt.txt").write_text("2\n1\n3\n2\n")
    argv = ["--val_dir", str(val), "--ground_truth", str(tmp_path / "gt.txt"), "--meta", str(tmp_path / "meta.mat")]
    assert subfolders.main(argv) == 0
    assert sorted(p.name for p in (val / "n01443537").iterdir()) == ["ILSVRC2012_val_00000001.JPEG",
                                                                    "ILSVRC2012_val_00000004.JPEG"]
    assert (val / "n01440764" / "ILSVRC2012_val_00000002.JPEG").read_bytes() == b"jpeg 2"
    assert not list(val.glob("*.JPEG"))
    assert subfolders.main(argv) == 0  # rerun: already sorted, nothing to do


def test_kaggle_csv_copy_and_errors(tmp_path, capsys):
    val = flat_folder(tmp_path, 2)
    (tmp_path / "sol.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01 1 2 3 4\n"
                                      "ILSVRC2012_val_00000002,n02 5 6 7 8 n02 1 1 1 1\n")
    assert subfolders.main(["--val_dir", str(val), "--ground_truth", str(tmp_path / "sol.csv"),
                            "--copy_to", str(tmp_path / "sorted")]) == 0
    assert (tmp_path / "sorted" / "n02" / "ILSVRC2012_val_00000002.JPEG").exists()
    assert (val / "ILSVRC2012_val_00000002.JPEG").exists()
    assert subfolders.main(["--val_dir", str(val), "--ground_truth", str(tmp_path / "gt.txt")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "gt.txt").write_text("1\n")
    assert subfolders.main(["--val_dir", str(val), "--ground_truth", str(tmp_path / "gt.txt")]) == 2
    assert "--meta" in capsys.readouterr().err
