"""pyproject's filterwarnings: a deprecated API used from facestore's own code fails the suite,
while the same warning raised from another library's module stays a warning."""

import warnings

import pytest


def _warn_from(module_name: str, category: type[Warning]) -> None:
    # warnings attributes a warning to the calling frame's __name__, so run the call "inside" it
    exec(
        "import warnings\nwarnings.warn('old API', category)",
        {"__name__": module_name, "category": category},
    )


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning, FutureWarning])
def test_a_deprecation_warning_from_facestore_code_is_an_error(category: type[Warning]) -> None:
    with pytest.raises(category, match="old API"):
        _warn_from("facestore.cli.common", category)


def test_the_same_warning_from_another_library_stays_a_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:  # keeps the filters pytest set
        _warn_from("somelibrary.module", DeprecationWarning)
    assert [str(w.message) for w in caught] == ["old API"]
