"""Property tests of every reader: mutated inputs give the package's DataError naming the
file, or a correct result; never another exception, never a RuntimeWarning.

The inputs and checks are tests/fuzz_strategies.py's (bench/fuzz.py runs 1,000 per reader
from the same strategies). Example counts are fixed and the draw is derandomised, so a run
takes the same time and meets the same inputs every time.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_strategies import TARGETS, outcome, strategy

EXAMPLES = 30  # per reader: about 20 s for all of them on one core

SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def _check(name, data):
    target = TARGETS[name]
    kind, detail = outcome(target, data.draw(strategy(target), label="input"))
    assert kind in ("error", "correct"), f"{name}: {kind}: {detail}"


@pytest.mark.parametrize("name", TARGETS)
@SETTINGS
@given(data=st.data())
def test_reader_gives_a_named_error_or_a_correct_result(name, data):
    _check(name, data)
