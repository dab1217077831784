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


def test_yaml_roundtrip(tmp_path):
    cfg = Outer("y", Inner(3, (1, 2)))
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(Outer, tmp_path / "c.yaml") == cfg
    assert to_dict(cfg) == {"name": "y", "inner": {"depth": 3, "sizes": [1, 2]}}


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"config\.inner: unknown keys \['dept'\]"):
        from_dict(Outer, {"inner": {"dept": 3}})
