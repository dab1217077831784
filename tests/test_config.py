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
