"""Wrong types through the Python API are one ``UserError`` naming the argument, raised before
anything is loaded or written (``harness.run(size="big")``, ``cache="no"``, ...)."""

from __future__ import annotations

import pytest

import harness
from harness.errors import UserError


@pytest.mark.parametrize("options, message", [
    ({"size": "big"}, "argument size 'big': expected a whole number"),
    ({"cache": "no"}, "argument cache 'no': expected true or false"),
    ({"seed": True}, "argument seed True: expected a whole number"),
    ({"plugins": "x.py"}, "argument plugins 'x.py': give a list of names"),
    ({"plugins": [3]}, "argument plugins [3]: give a list of names"),
    ({"out": 5}, "argument out 5: expected a string"),
    ({"device": None}, "argument device None: expected a string"),
    ({"sise": 64}, "argument sise is not a run setting (did you mean 'size'?)"),
])
def test_a_wrong_setting_is_one_user_error_naming_it(options, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as refused:
        harness.run(**options)
    assert str(refused.value).startswith(message)
    assert list(tmp_path.iterdir()) == []
