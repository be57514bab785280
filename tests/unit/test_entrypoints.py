"""A pool's entrypoint policy, and run tokens and sealed values, as pure functions."""

from __future__ import annotations

import pytest

from shiftboss.entrypoints import admitted, check_patterns
from shiftboss.errors import FailedPrecondition, Unauthenticated
from shiftboss.services.sealing import Seal


@pytest.mark.parametrize(
    ("entrypoint", "patterns", "expected"),
    [
        ("os:system", [], True),  # no pool policy: each worker's own decides
        ("os:system", ["*"], True),
        ("os:system", ["etl"], False),
        ("etl:main", ["etl"], True),
        ("etl.flows.daily:main", ["etl"], True),
        ("etl_other:main", ["etl"], False),
        ("etl.flows:main", ["etl.flows.daily"], False),
        ("flows/daily.py:main", ["flows/"], True),
        ("./flows/daily.py:main", ["flows"], True),
        ("flows/../secrets/x.py:main", ["flows/"], False),
        ("../flows/daily.py:main", ["flows/"], False),
        ("/etc/flows/daily.py:main", ["flows/"], False),
        ("flowsx/daily.py:main", ["flows/"], False),
        ("flows/daily.py:main", ["flows"], True),
        ("flows/daily.py:main", ["flows.daily"], False),
        ("etl/flows/daily.py:main", ["etl.flows"], True),
        ("daily.py:main", ["./"], True),
    ],
)
def test_admitted(entrypoint: str, patterns: list[str], expected: bool) -> None:
    assert admitted(entrypoint, check_patterns(patterns)) is expected


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        ([" "], "an empty pattern"),
        (["os-path"], "is neither a module name"),
        (["/srv/flows/"], "folders are relative to the run's working directory"),
        (["../up/"], "stay inside it"),
    ],
)
def test_patterns_that_cannot_match_are_refused(patterns: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_patterns(patterns)


def test_run_tokens_are_bound_to_run_lease_and_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    seal = Seal.load("", str(tmp_path))
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    token = seal.run_token("r-1", 7)
    assert seal.check_run_token(token) == ("r-1", 7)
    assert Seal.load("", str(tmp_path)).check_run_token(token) == ("r-1", 7)  # the same key, read back
    for forged in (token.replace("_7_", "_8_"), token.replace("r-1", "r-2"), token[:-1], "sbr_", "sbr_r-1_x_y"):
        with pytest.raises(Unauthenticated, match="invalid run token"):
            seal.check_run_token(forged)
    other = Seal.load("", str(tmp_path / "elsewhere"))
    with pytest.raises(Unauthenticated):
        other.check_run_token(token)
    sealed = seal.seal({"a": [1, "two"]})
    assert "two" not in sealed and seal.open(sealed) == {"a": [1, "two"]}
    with pytest.raises(FailedPrecondition, match="cannot be decrypted with this server's secret key"):
        other.open(sealed)
    with pytest.raises(ValueError, match="secret_key: must be at least 32 random bytes"):
        Seal.load("short", str(tmp_path))
