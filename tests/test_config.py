from dataclasses import dataclass, field

import pytest

from hmr.config import from_dict, load_yaml, save_yaml, to_dict


@dataclass
class Inner:
    depth: int = 6
    sizes: tuple[int, int] = (256, 192)


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    stages: tuple[Inner, ...] = ()


def test_yaml_roundtrip(tmp_path):
    cfg = Outer("y", Inner(3, (1, 2)), (Inner(1), Inner(2)))
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(Outer, tmp_path / "c.yaml") == cfg
    assert to_dict(cfg)["inner"] == {"depth": 3, "sizes": [1, 2]}
    with pytest.raises(ValueError, match=r"config\.stages\[1\]: unknown keys \['x'\]"):
        from_dict(Outer, {"stages": [{"depth": 1}, {"x": 2}]})


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"config\.inner: unknown keys \['dept'\]"):
        from_dict(Outer, {"inner": {"dept": 3}})


@dataclass
class Typed:
    threshold: float | None = None
    tiles: bool = True
    count: int = 1
    formats: tuple[str, ...] = ("obj",)
    inner: Inner = field(default_factory=Inner)


def test_dotted_overrides_parse_as_yaml():
    from hmr.config import parse_overrides

    got = parse_overrides(["inner.depth=3", "--tiles=false", "formats=[obj, glb]", "threshold=null", "name=a=b"])
    assert got == {"inner": {"depth": 3}, "tiles": False, "formats": ["obj", "glb"], "threshold": None, "name": "a=b"}
    for bad in ("depth", "=3", "a..b=1", "inner.2x=1"):
        with pytest.raises(ValueError, match="expected section.key=value"):
            parse_overrides([bad])
    with pytest.raises(ValueError, match="both as a value and a section"):
        parse_overrides(["inner=3", "inner.depth=2"])


def test_load_defaults_file_then_overrides(tmp_path):
    from hmr.config import dump, load

    path = tmp_path / "c.yaml"
    path.write_text("count: 4\ninner:\n  depth: 2\n  sizes: [1, 2]\n")
    cfg = load(Typed, path, ["inner.depth=5", "threshold=0.5"])
    assert cfg == Typed(threshold=0.5, count=4, inner=Inner(5, (1, 2)))
    assert load(Typed, None, ["threshold=1"]).threshold == 1.0  # an int is a valid float
    path.write_text(dump(cfg))
    assert load(Typed, path) == cfg


@pytest.mark.parametrize(
    "override,message",
    [
        ("threshold=abc", r"config\.threshold: expected a number, got 'abc'"),
        ("tiles=3", r"config\.tiles: expected true or false, got 3"),
        ("count=true", r"config\.count: expected an integer, got True"),
        ("inner.depth=1.5", r"config\.inner\.depth: expected an integer, got 1\.5"),
        ("colour=red", r"unknown keys \['colour'\]"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    from hmr.config import load

    with pytest.raises(ValueError, match=message):
        load(Typed, None, [override])


def test_bad_config_files(tmp_path):
    from hmr.config import load

    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match=r"list\.yaml: a config file holds a mapping"):
        load(Typed, tmp_path / "list.yaml")
    with pytest.raises(ValueError, match=r"broken\.yaml: not valid YAML"):
        load(Typed, tmp_path / "broken.yaml")
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml: cannot read the config"):
        load(Typed, tmp_path / "nope.yaml")
