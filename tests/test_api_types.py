"""Wrong types through the Python API are one ``UserError`` naming the argument, raised before
anything is loaded or written (``harness.run(size="big")``, ``cache="no"``, ...)."""

from __future__ import annotations

import pytest

import harness
from harness.errors import UserError


@pytest.mark.parametrize("options, message", [
    ({"size": "big"}, "harness.run: size='big' is str; give int or None"),
    ({"cache": "no"}, "harness.run: cache='no' is str; give bool"),
    ({"seed": True}, "harness.run: seed=True is bool; give int"),
    ({"plugins": "x.py"}, "harness.run: plugins='x.py' is str; give a tuple of str"),
    ({"plugins": [3]}, "harness.run: plugins=(3,) is tuple; give a tuple of str"),
    ({"out": 5}, "harness.run: out=5 is int; give str"),
    ({"device": None}, "harness.run: device=None is NoneType; give str"),
    ({"sise": 64}, "harness.run: unknown setting 'sise'; the settings are augmentation, batch_size, cache"),
])
def test_a_wrong_setting_is_one_user_error_naming_it(options, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as refused:
        harness.run(**options)
    assert str(refused.value).startswith(message)
    assert list(tmp_path.iterdir()) == []
