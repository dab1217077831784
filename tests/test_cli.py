import pickle

import pytest

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


def test_help_of_every_command(capsys):
    """``hmr --help`` lists each command with its one-line help; each command's own help shows its options."""
    from hmr.cli import _COMMANDS

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    top = capsys.readouterr().out
    for name, (_, help_text) in _COMMANDS.items():
        assert f"{name}" in top and help_text in top
    expected = {"demo": ["--config", "--checkpoint", "--max-pixels", "section.key=value"], "model": ["convert"],
                "body": ["info", "print its structure"], "config": ["show", "resolved pipeline config"],
                "data": ["check", "synth"]}  # fmt: skip
    for name, words in expected.items():
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert all(w in text for w in words), (name, text)


def test_version_imports_no_command():
    """``hmr --version`` must stay fast: it imports none of the command modules (torch among them)."""
    import subprocess
    import sys

    code = "import sys; from hmr.cli import main\ntry: main(['--version'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_config_precedence_defaults_file_flags_overrides(tmp_path, capsys):
    """``--print-config``: defaults, then --config, then flags, then section.key=value (each beats the one before)."""
    import yaml

    (tmp_path / "c.yaml").write_text("detector:\n  threshold: 0.4\ncamera:\n  focal: 800\n")
    argv = ["demo", "camera.focal=1000", "--print-config", "--config", str(tmp_path / "c.yaml"), "--focal", "900",
            "--no-tiles", "--outputs.max_pixels=7", "--mesh-format", "obj", "glb"]  # fmt: skip
    assert main(argv) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["detector"] == {"threshold": 0.4, "tiles": False, "box_only_min_score": 0.8}
    assert cfg["camera"]["focal"] == 1000.0 and cfg["outputs"]["formats"] == ["obj", "glb"]
    assert cfg["outputs"]["max_pixels"] == 7
    assert main(["config", "show", "--config", str(tmp_path / "c.yaml"), "--tracking.max_age=3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["tracking"]["max_age"] == 3 and shown["camera"]["focal"] == 800.0


def test_bad_config_key_is_one_line(capsys):
    with pytest.raises(SystemExit):  # a command without settings takes no overrides
        main(["body", "info", "--detector.threshold=1"])
    assert "unrecognized arguments: --detector.threshold=1" in capsys.readouterr().err
    assert main(["config", "show", "detector.thresh=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hmr: error: ") and "unknown keys ['thresh']" in err and "\n" not in err
