import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from lnemo import ope


def test_read_svmlight(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("2 qid:10 1:0.5 3:1.5 # doc a\n0 qid:10 2:1.0\n\n4 qid:3 3:2.0\n")
    data, qids = ope.read_svmlight(path)
    assert qids.tolist() == ["10", "3"]
    np.testing.assert_array_equal(data.labels_CxN, [[2, 0], [4, 0]])
    np.testing.assert_array_equal(data.where_CxN, [[True, True], [True, False]])
    np.testing.assert_allclose(data.features_CxNxF[0], [[0.5, 0.0, 1.5], [0.0, 1.0, 0.0]])
    assert ope.read_svmlight(path, num_features=5)[0].features_CxNxF.shape == (2, 2, 5)


@pytest.mark.parametrize("lines, match", [
    (["1 2:3"], "expected '<grade> qid:<id>"), (["1 qid:1 x:3"], "cannot parse"), (["1 qid:1 0:3"], "1-based"),
    ([], "no SVMLight rows"),
])
def test_read_svmlight_rejects_bad_lines(lines, match):
    with pytest.raises(ValueError, match=match):
        ope.read_svmlight(lines)


OBD_HEADER = ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1\n"


def test_load_obd_from_folder(tmp_path):
    folder = tmp_path / "random" / "men"
    folder.mkdir(parents=True)
    (folder / "men.csv").write_text(OBD_HEADER + "0,t,3,1,0,0.25,a,x\n1,t,1,3,1,0.25,b,x\n")
    (folder / "item_context.csv").write_text("h\n" + "r\n" * 4)
    log = ope.load_obd_sample(policy="random", campaign="men", root=tmp_path)
    np.testing.assert_array_equal(log.position_R, [0, 2])
    np.testing.assert_array_equal(log.user_features_RxU, [[0, 0], [1, 0]])
    assert log.num_items == 4
    est = ope.ip_ips(log.click_R[:, None], np.full((2, 1), 0.5), log.propensity_R[:, None])
    np.testing.assert_allclose(est.value, 1.0)


def test_load_obd_errors(tmp_path):
    with pytest.raises(ValueError, match="policy must be"):
        ope.load_obd_sample(policy="greedy")
    with pytest.raises(FileNotFoundError, match="OBD file not found"):
        ope.load_obd_sample(root=tmp_path)
    if importlib.util.find_spec("obp") is None:
        with pytest.raises(ImportError, match="optional package 'obp'"):
            ope.load_obd_sample()


def test_ope_imports_no_flax():
    code = "import sys, lnemo.ope; assert 'flax' not in sys.modules, 'flax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
