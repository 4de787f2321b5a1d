"""The exception hierarchy stays in step with the core's ErrorKind."""

import builtins

import pytest

import lobster
from lobster.exceptions import BY_KIND


def test_every_core_kind_has_its_class():
    assert set(lobster.ERROR_KINDS) == set(BY_KIND), "exceptions.py and ErrorKind differ"


@pytest.mark.parametrize("kind", lobster.ERROR_KINDS)
def test_every_class_is_a_lobster_error_and_exported(kind):
    cls = BY_KIND[kind]
    assert issubclass(cls, lobster.LobsterError)
    assert cls.kind == kind
    assert getattr(lobster, cls.__name__) is cls
    assert not hasattr(builtins, cls.__name__), "must not shadow a builtin"


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (lobster.NotFoundError, LookupError),
        (lobster.InvalidArgumentError, ValueError),
        (lobster.PermissionDeniedError, PermissionError),
        (lobster.TimedOutError, TimeoutError),
        (lobster.UnsupportedError, NotImplementedError),
        (lobster.HostFailureError, OSError),
    ],
)
def test_builtin_bases(cls, builtin):
    assert issubclass(cls, builtin)
    error = cls("message")
    assert str(error) == "message"
    with pytest.raises(builtin):
        raise error
