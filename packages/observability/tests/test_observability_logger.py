from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator

import pytest

from structum_lab.plugins.observability import StructuredLogger, get_logger


class _Recorder(logging.Filter):
    """Sees each record as the logger accepts it, before any handler formats it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.probe: Callable[[], object] = lambda: None
        self.probed: list[object] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        self.probed.append(self.probe())
        return True


class _CountingStr:
    def __init__(self) -> None:
        self.calls = 0

    def __str__(self) -> str:
        self.calls += 1
        return "counted"


@pytest.fixture
def store() -> Iterator[_Recorder]:
    recorder = _Recorder()
    stdlib = logging.getLogger("test_observability.store")
    stdlib.addFilter(recorder)
    stdlib.setLevel(logging.DEBUG)
    yield recorder
    stdlib.removeFilter(recorder)
    stdlib.setLevel(logging.NOTSET)


def test_get_logger_wraps_the_stdlib_logger() -> None:
    logger = get_logger("test_observability.wrap")
    assert isinstance(logger, StructuredLogger)
    assert logger.stdlib_logger is logging.getLogger("test_observability.wrap")
    assert logger.name == "test_observability.wrap"
    assert get_logger().stdlib_logger is logging.getLogger()


@pytest.mark.parametrize(
    ("method", "level"),
    [
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
        ("critical", logging.CRITICAL),
    ],
)
def test_each_level_renders_and_attaches_fields(
    caplog: pytest.LogCaptureFixture, method: str, level: int
) -> None:
    caplog.set_level(logging.DEBUG)
    getattr(get_logger("test_observability.levels"), method)("event", a=1, b="two words")
    (record,) = caplog.records
    assert record.levelno == level
    assert record.getMessage() == "event a=1 b='two words'"
    assert record.fields == {"a": 1, "b": "two words"}  # type: ignore[attr-defined]


def test_values_are_rendered_unambiguously(caplog: pytest.LogCaptureFixture) -> None:
    get_logger("test_observability.render").warning(
        "e", empty="", plain="abc", eq="a=b", quote='say "x"', none=None, flag=True, items=[1, 2]
    )
    assert caplog.records[0].getMessage() == (
        "e empty='' plain=abc eq='a=b' quote='say \"x\"' none=None flag=True items=[1, 2]"
    )


def test_record_attribute_names_are_ordinary_fields(caplog: pytest.LogCaptureFixture) -> None:
    fields = {
        "message": "m",
        "msg": "x",
        "args": "y",
        "name": "n",
        "levelname": "l",
        "asctime": "t",
        "lineno": 0,
        "extra": {"k": 1},
    }
    get_logger("test_observability.collide").warning("event", **fields)
    (record,) = caplog.records
    assert record.fields == fields  # type: ignore[attr-defined]
    assert record.name == "test_observability.collide"
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        "event message=m msg=x args=y name=n levelname=l asctime=t lineno=0 extra={'k': 1}"
    )


def test_fields_reach_a_json_handler(store: _Recorder) -> None:
    get_logger("test_observability.store").info("pool", checked_out=2, message="ok")
    (record,) = store.records
    assert json.loads(json.dumps(record.fields)) == {"checked_out": 2, "message": "ok"}  # type: ignore[attr-defined]


def test_percent_args_stay_lazy(store: _Recorder) -> None:
    arg = _CountingStr()
    logger = get_logger("test_observability.store")
    store.probe = lambda: arg.calls
    logger.info("value %s", arg, n=1)
    (record,) = store.records
    assert store.probed == [0]  # not rendered when the record was made
    assert record.msg == "value %s n=1"
    assert record.args == (arg,)
    assert record.getMessage() == "value counted n=1"


def test_percent_in_fields_survives_formatting(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test_observability.percent")
    logger.warning("%d rows", 5, note="100% done")
    logger.warning("no args 100%", note="50%")
    first, second = caplog.records
    assert first.getMessage() == "5 rows note='100% done'"
    assert second.getMessage() == "no args 100% note=50%"


def test_disabled_level_does_no_work(store: _Recorder) -> None:
    logger = get_logger("test_observability.store")
    logger.stdlib_logger.setLevel(logging.WARNING)
    value = _CountingStr()
    logger.info("hidden %s", value, field=value)
    assert not logger.isEnabledFor(logging.INFO)
    assert store.records == []
    assert value.calls == 0


def test_exception_and_exc_info(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test_observability.exc")
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed", step=1)
    error = ValueError("given")
    logger.warning("with exc", exc_info=error)
    logger.error("without exc")
    handled, given, plain = caplog.records
    assert handled.levelno == logging.ERROR
    assert handled.exc_info is not None
    assert handled.exc_info[0] is ValueError
    assert handled.getMessage() == "failed step=1"
    assert "ValueError: bad" in caplog.text
    assert given.exc_info is not None
    assert given.exc_info[1] is error
    assert plain.exc_info is None


def test_stack_info(caplog: pytest.LogCaptureFixture) -> None:
    get_logger("test_observability.stack").warning("s", stack_info=True)
    stack = caplog.records[0].stack_info
    assert stack is not None
    assert "test_stack_info" in stack


def test_caller_is_the_users_line(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test_observability.caller")
    caplog.set_level(logging.DEBUG)
    line = sys._getframe().f_lineno + 1
    logger.debug("d")
    logger.bind(k=1).info("i")
    logger.log(logging.WARNING, "w")
    try:
        raise KeyError("k")
    except KeyError:
        logger.exception("x")
    debug, info, warning, exception = caplog.records
    assert [r.lineno for r in caplog.records] == [line, line + 1, line + 2, line + 6]
    for record in (debug, info, warning, exception):
        assert record.pathname == __file__
        assert record.funcName == "test_caller_is_the_users_line"


def _log_via_helper(logger: StructuredLogger) -> None:
    logger.warning("from helper", stacklevel=2)


def test_stacklevel_points_past_helpers(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test_observability.helper")
    line = sys._getframe().f_lineno + 1
    _log_via_helper(logger)
    (record,) = caplog.records
    assert record.lineno == line
    assert record.funcName == "test_stacklevel_points_past_helpers"


def test_bind_attaches_fields_and_leaves_the_parent_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = get_logger("test_observability.bind")
    request = base.bind(request_id="r1", user="u")
    child = request.bind(step="load")
    child.warning("event", user="override", n=1)
    request.warning("event")
    base.warning("event")
    first, second, third = caplog.records
    assert first.fields == {"request_id": "r1", "user": "override", "step": "load", "n": 1}  # type: ignore[attr-defined]
    assert first.getMessage() == "event request_id=r1 user=override step=load n=1"
    assert second.getMessage() == "event request_id=r1 user=u"
    assert third.getMessage() == "event"
    assert third.fields == {}  # type: ignore[attr-defined]
    assert request.context == {"request_id": "r1", "user": "u"}
    assert base.context == {}
    assert child.stdlib_logger is base.stdlib_logger


def test_unprintable_values_do_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    get_logger("test_observability.broken").warning("e", obj=Broken())
    assert caplog.records[0].getMessage() == "e obj=<unprintable Broken>"


def test_unpacked_dicts_of_any_value_type(caplog: pytest.LogCaptureFixture) -> None:
    # The reserved keywords are typed loosely so that `**some_dict` type-checks for any dict.
    labels: dict[str, str] = {"env": "prod"}
    sizes: dict[str, float] = {"ratio": 0.5}
    logger = get_logger("test_observability.unpack")
    logger.warning("labels", **labels)
    logger.warning("sizes", **sizes)
    assert [r.getMessage() for r in caplog.records] == ["labels env=prod", "sizes ratio=0.5"]


def test_reserved_keywords_are_checked(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test_observability.reserved")
    with pytest.raises(TypeError, match="stacklevel must be an int >= 1"):
        logger.warning("e", stacklevel="2")
    with pytest.raises(TypeError, match="stacklevel must be an int >= 1"):
        logger.debug("disabled level too", stacklevel=0)
    try:
        raise OSError("disk")
    except OSError:
        logger.warning("truthy exc_info", exc_info=1)
    (record,) = caplog.records
    assert record.exc_info is not None
    assert record.exc_info[0] is OSError
