import pickle

from hmr import __version__
from hmr.cli import main
from tests.synthetic_smpl import synthetic_smpl_arrays


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_commands(capsys):
    assert main([]) == 0
    assert "body" in capsys.readouterr().out


def test_body_info(tmp_path, capsys):
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps(synthetic_smpl_arrays(), protocol=2))
    assert main(["body", "info", str(path)]) == 0
    assert "vertices: 240" in capsys.readouterr().out


def test_missing_model_is_one_line_error(tmp_path, capsys):
    assert main(["body", "info", str(tmp_path / "nope.pkl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hmr: error: SMPL model file not found") and "\n" not in err
